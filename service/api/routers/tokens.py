"""Routes for tokens."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])
