"""One router module per resource."""

from fastapi import APIRouter

from service.api.routers import (
    candidates,
    dashboard,
    datasets,
    decisions,
    evaluations,
    families,
    health,
    promotions,
    sweeps,
    tokens,
    webhooks,
)

ROUTERS: list[APIRouter] = [
    health.router,
    tokens.router,
    datasets.router,
    families.router,
    candidates.router,
    evaluations.router,
    promotions.router,
    decisions.router,
    sweeps.router,
    dashboard.router,
    webhooks.router,
]
