"""Routes for families."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/families", tags=["families"])
