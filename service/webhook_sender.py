"""Delivering queued webhook events: claim what is due, POST it signed, log the attempt.

One pass (:func:`deliver_due`) claims each due delivery with a conditional UPDATE that
pushes its ``next_attempt_at`` past the request timeout (a lease: two senders never post
the same attempt), posts it, and records the attempt in its ``log``. A 2xx answer marks it
``delivered``; anything else (an error status, a refused connection, a timeout) schedules
the next attempt after ``webhook_backoff_seconds × 2^(attempts−1)`` (capped at an hour),
until ``webhook_max_attempts`` make it ``failed``. :class:`WebhookSender` runs passes in a
daemon thread of the API process (started and stopped by the app's lifespan).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import NotRequired, TypedDict

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service import __version__
from service.db.base import utcnow
from service.db.models import Webhook, WebhookDelivery
from service.db.session import unit_of_work
from service.jsontypes import JSONObject
from service.settings import Settings
from service.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, body_of, sign

log = logging.getLogger("tunegate.webhooks")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_MAX_BACKOFF = timedelta(hours=1)
_BATCH = 20


def _claim(session: Session, delivery_id: int, lease: timedelta) -> bool:
    now = utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + lease)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class Attempt(TypedDict):
    """One delivery attempt as the delivery log records it."""

    at: str
    status_code: NotRequired[int]
    error: NotRequired[str]


def _post(client: httpx.Client, url: str, secret: str, delivery: WebhookDelivery) -> Attempt:
    """One attempt; returns its log entry (``status_code`` or ``error``)."""
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"tunegate-webhooks/{__version__}",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: delivery.delivery_id,
        SIGNATURE_HEADER: sign(secret, body),
    }
    entry: Attempt = {"at": utcnow().isoformat()}
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return entry
    entry["status_code"] = response.status_code
    if not response.is_success:
        entry["error"] = f"HTTP {response.status_code}: {response.text[:200]}"
    return entry


def _record(delivery: WebhookDelivery, entry: Attempt, settings: Settings) -> None:
    delivery.attempts += 1
    logged: JSONObject = {"attempt": delivery.attempts, "at": entry["at"]}
    if "status_code" in entry:
        logged["status_code"] = entry["status_code"]
    if "error" in entry:
        logged["error"] = entry["error"]
    delivery.log = [*delivery.log, logged]
    delivery.last_status_code = entry.get("status_code")
    delivery.last_error = entry.get("error")
    if "error" not in entry:
        delivery.status = DELIVERED
        delivery.delivered_at = utcnow()
    elif delivery.attempts >= settings.webhook_max_attempts:
        delivery.status = FAILED
    else:
        delay = timedelta(seconds=settings.webhook_backoff_seconds * 2 ** (delivery.attempts - 1))
        delivery.next_attempt_at = utcnow() + min(delay, _MAX_BACKOFF)


def deliver_due(factory: sessionmaker[Session], settings: Settings, client: httpx.Client) -> int:
    """One pass over the due deliveries; returns how many were attempted."""
    lease = timedelta(seconds=settings.webhook_timeout_seconds * 3)
    with unit_of_work(factory, write=False) as session:
        due = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= utcnow()
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(_BATCH)
            )
        )
    attempted = 0
    for delivery_id in due:
        with unit_of_work(factory) as session:
            if not _claim(session, delivery_id, lease):
                continue  # another sender took it
        # read, then post with no transaction open
        with unit_of_work(factory, write=False) as session:
            delivery = session.get_one(WebhookDelivery, delivery_id)
            hook = session.get_one(Webhook, delivery.webhook_id)
            url, secret = hook.url, hook.secret
            session.expunge(delivery)
        entry = _post(client, url, secret, delivery)
        with unit_of_work(factory) as session:
            row = session.get(WebhookDelivery, delivery_id)
            if row is not None:  # the webhook may have been deleted meanwhile
                _record(row, entry, settings)
        attempted += 1
    return attempted


class WebhookSender:
    """A daemon thread running :func:`deliver_due` every ``webhook_poll_seconds``."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory = factory
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tunegate-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.webhook_timeout_seconds) as client:
            while not self._stop.is_set():
                try:
                    deliver_due(self.factory, self.settings, client)
                except Exception:  # a broken pass must not end the thread
                    log.exception("webhook delivery pass failed")
                self._stop.wait(self.settings.webhook_poll_seconds)
