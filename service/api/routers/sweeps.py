"""Learning-rate sweeps: the sweep table with labels and the recommended rate."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ReadToken, SessionDep
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.sweeps import SweepOut, SweepSummaryOut
from service.sweep_view import list_sweeps, sweep_view

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], route_class=UnitOfWorkRoute)


@router.get("/{family}", summary="A family's sweeps")
def family_sweeps(session: SessionDep, _: ReadToken, family: str) -> list[SweepSummaryOut]:
    return [SweepSummaryOut.of(s) for s in list_sweeps(session, family)]


@router.get("/{family}/{sweep}", summary="One sweep: rows by learning rate, labels, recommendation")
def one_sweep(
    session: SessionDep, _: ReadToken, family: str, sweep: str, metric: str | None = None
) -> SweepOut:
    return SweepOut.of(sweep_view(session, family, sweep, lift_metric=metric))
