"""Request and response bodies for ``/v1/webhooks``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.common import PlainText, UtcDateTime
from service.db.models import Webhook, WebhookDelivery
from service.jsontypes import JSONObject

EventName = Literal["decision.made", "promotion", "evaluation.failed"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: PlainText = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=2000, description="http:// or https:// endpoint")
    events: list[EventName] | None = Field(default=None, description="Default: every event")
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="HMAC-SHA256 key; generated (and returned once) when left out",
    )


class WebhookOut(BaseModel):
    id: int
    family: str
    url: str
    events: list[str]
    created_at: UtcDateTime

    @classmethod
    def of(cls, row: Webhook, family: str) -> Self:
        return cls(
            id=row.id,
            family=family,
            url=row.url,
            events=list(row.events),
            created_at=row.created_at,
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown only in this response")


class DeliveryOut(BaseModel):
    delivery_id: str
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: UtcDateTime | None
    last_status_code: int | None
    last_error: str | None
    created_at: UtcDateTime
    delivered_at: UtcDateTime | None
    log: list[JSONObject] = Field(description="Every attempt: at, status_code or error")
    payload: JSONObject = Field(description="The JSON body sent (and signed)")

    @classmethod
    def of(cls, row: WebhookDelivery) -> Self:
        return cls.model_validate(
            {
                "delivery_id": row.delivery_id,
                "event": row.event,
                "status": row.status,
                "attempts": row.attempts,
                "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
                "last_status_code": row.last_status_code,
                "last_error": row.last_error,
                "created_at": row.created_at,
                "delivered_at": row.delivered_at,
                "log": list(row.log or []),
                "payload": dict(row.payload),
            }
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    total: int
    offset: int
    limit: int
