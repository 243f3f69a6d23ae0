"""Pick the dispatcher the settings ask for."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from service.worker.dispatch import Dispatcher, NullDispatcher


def make_dispatcher(settings: Settings, factory: sessionmaker[Session]) -> Dispatcher:
    if settings.queue == "none":
        return NullDispatcher()
    if settings.queue == "celery":
        from service.worker.celery_dispatch import CeleryDispatcher

        return CeleryDispatcher(settings)
    from service.worker.inprocess import InProcessWorker

    return InProcessWorker(settings, factory)
