"""Webhooks: a family's HTTP endpoints told about its events, signed, retried, logged.

Events: ``decision.made`` (a gate decision was stored), ``promotion`` (an alias moved) and
``evaluation.failed``. :func:`emit` writes one *outbox* row per subscribed webhook in the
event's own unit of work, so an event is recorded exactly when what it reports commits,
whichever process (API, in-process worker, Celery worker) made it; the API process's
:class:`~service.webhook_sender.WebhookSender` delivers the rows. Emitting never raises:
a webhook cannot block or fail the evaluation, decision or promotion that triggered it.

A delivery is a ``POST`` of the JSON body ``{"event", "delivery_id", "family",
"created_at", "data"}`` (keys sorted, compact) with the headers ``X-Tunegate-Event``,
``X-Tunegate-Delivery`` (the same id on every retry: receivers deduplicate on it) and
``X-Tunegate-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Family, Webhook, WebhookDelivery
from service.errors import InvalidRequest, NotFound
from service.families import get_family
from service.jsontypes import JSONObject, JSONValue

log = logging.getLogger("tunegate.webhooks")

DECISION_MADE, PROMOTION, EVALUATION_FAILED = "decision.made", "promotion", "evaluation.failed"
EVENTS = (DECISION_MADE, PROMOTION, EVALUATION_FAILED)
SIGNATURE_HEADER = "X-Tunegate-Signature"
DELIVERY_HEADER = "X-Tunegate-Delivery"
EVENT_HEADER = "X-Tunegate-Event"


class WebhookNotFound(NotFound):
    pass


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes sent (and signed) for a delivery, the same on every attempt."""
    return json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


# --- managing ------------------------------------------------------------------------------


def create_webhook(
    session: Session,
    family_name: str,
    url: str,
    events: Sequence[str] | None = None,
    secret: str | None = None,
) -> Webhook:
    """Register ``url`` for a family's ``events`` (all by default); a secret is generated
    when none is given. Raises ``FamilyNotFound`` and :class:`InvalidRequest`."""
    family = get_family(session, family_name)
    chosen = list(dict.fromkeys(events)) if events else list(EVENTS)
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise InvalidRequest(f"unknown webhook events {unknown}; known: {list(EVENTS)}")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(f"webhook url must be http:// or https://, not {url!r}")
    webhook = Webhook(
        family_id=family.id, url=url, secret=secret or secrets.token_hex(32), events=chosen
    )
    session.add(webhook)
    session.flush()
    return webhook


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise WebhookNotFound(f"webhook {webhook_id} does not exist")
    return webhook


def list_webhooks(session: Session, family_name: str | None = None) -> list[tuple[Webhook, str]]:
    """Webhooks with their family's name, oldest first (of one family when named)."""
    query = select(Webhook, Family.name).join(Family, Family.id == Webhook.family_id)
    if family_name is not None:
        query = query.where(Webhook.family_id == get_family(session, family_name).id)
    return [(hook, name) for hook, name in session.execute(query.order_by(Webhook.id))]


def delete_webhook(session: Session, webhook_id: int) -> None:
    """Remove a webhook and its delivery log. Raises :class:`WebhookNotFound`."""
    session.delete(get_webhook(session, webhook_id))
    session.flush()


def list_deliveries(
    session: Session,
    webhook_id: int,
    *,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[WebhookDelivery], int]:
    """A webhook's deliveries, newest first, and their total."""
    get_webhook(session, webhook_id)
    where = [WebhookDelivery.webhook_id == webhook_id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = session.scalar(select(func.count(WebhookDelivery.id)).where(*where)) or 0
    rows = session.scalars(
        select(WebhookDelivery)
        .where(*where)
        .order_by(WebhookDelivery.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(rows), total


# --- emitting ------------------------------------------------------------------------------


def emit(session: Session, family_id: int, event: str, data: Mapping[str, JSONValue]) -> int:
    """Queue ``event`` for every webhook of the family subscribed to it; returns how many.

    Runs in the caller's unit of work (a savepoint) and never raises: a failure to queue
    is logged and the caller's work goes on.
    """
    try:
        with session.begin_nested():
            hooks = [
                h
                for h in session.scalars(select(Webhook).where(Webhook.family_id == family_id))
                if event in h.events
            ]
            if not hooks:
                return 0
            family = session.get_one(Family, family_id)
            now = utcnow()
            for hook in hooks:
                delivery_id = str(uuid.uuid4())
                payload: JSONObject = {
                    "event": event,
                    "delivery_id": delivery_id,
                    "family": family.name,
                    "created_at": now.isoformat(),
                    "data": dict(data),
                }
                session.add(
                    WebhookDelivery(
                        webhook_id=hook.id,
                        delivery_id=delivery_id,
                        event=event,
                        payload=payload,
                        next_attempt_at=now,
                        log=[],
                    )
                )
            session.flush()
            return len(hooks)
    except SQLAlchemyError as exc:
        log.warning("webhook event %s for family %s not queued: %s", event, family_id, exc)
        return 0
