"""Routes for sweeps."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
