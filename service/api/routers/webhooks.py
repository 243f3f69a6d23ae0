"""Webhooks: register a family's endpoints, list them, read their delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from service import webhooks
from service.api.deps import AdminToken, IdPath, OffsetQuery, ReadToken, SessionDep
from service.api.routing import UnitOfWorkRoute
from service.api.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=UnitOfWorkRoute)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a family's webhook")
def create_webhook(session: SessionDep, _: AdminToken, body: WebhookIn) -> WebhookCreated:
    row = webhooks.create_webhook(session, body.family, body.url, body.events, body.secret)
    return WebhookCreated(**WebhookOut.of(row, body.family).model_dump(), secret=row.secret)


@router.get("", summary="Webhooks (of one family)")
def list_webhooks(session: SessionDep, _: ReadToken, family: str | None = None) -> list[WebhookOut]:
    return [WebhookOut.of(row, name) for row, name in webhooks.list_webhooks(session, family)]


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a webhook")
def delete_webhook(session: SessionDep, _: AdminToken, webhook_id: IdPath) -> None:
    webhooks.delete_webhook(session, webhook_id)


@router.get("/{webhook_id}/deliveries", summary="The delivery log, newest first")
def deliveries(
    session: SessionDep,
    _: ReadToken,
    webhook_id: IdPath,
    status: Literal["pending", "delivered", "failed"] | None = None,
    offset: OffsetQuery = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    rows, total = webhooks.list_deliveries(
        session, webhook_id, status=status, offset=offset, limit=limit
    )
    return DeliveryPage(
        items=[DeliveryOut.of(r) for r in rows], total=total, offset=offset, limit=limit
    )
