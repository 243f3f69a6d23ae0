"""Routes for evaluations."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])
