"""Routes for candidates."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/candidates", tags=["candidates"])
