"""Routes for promotions."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/promotions", tags=["promotions"])
