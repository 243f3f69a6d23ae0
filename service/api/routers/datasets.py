"""Routes for datasets."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
