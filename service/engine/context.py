"""What a worker keeps between jobs (:class:`WorkerContext`), and the check a job makes
between chunks (:func:`check_continue`): stop when the lease was lost or a cancel asked."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Evaluation
from service.db.session import unit_of_work
from service.engine import lease
from service.engine.batching import BatchSizer
from service.engine.loading import ModelPool
from service.engine.scoring import EvaluatorSet
from service.errors import EvaluationCancelled
from service.settings import Settings


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerContext:
    """What a worker keeps between jobs: settings, the database, loaded models, scorers."""

    settings: Settings
    factory: sessionmaker[Session]
    worker_id: str = field(default_factory=default_worker_id)
    pool: ModelPool | None = None
    evaluator_sets: dict[tuple[str, ...], EvaluatorSet] = field(default_factory=dict)
    batcher: BatchSizer | None = None
    forward_passes: int = 0
    # Hooks inside each phase, for crash tests that SIGKILL a worker there:
    # a chunk of outputs and scores committed: (evaluation_id, examples done)
    after_chunk: Callable[[int, int], None] | None = None
    # a chunk of scores of stored outputs committed: (evaluation_id, outputs scored)
    after_score_chunk: Callable[[int, int], None] | None = None
    # aggregates flushed in their unit of work, not yet committed: (evaluation_id, rows)
    writing_aggregates: Callable[[int, int], None] | None = None

    def model_pool(self) -> ModelPool:
        if self.pool is None:
            if self.settings.torch_threads:
                import torch

                torch.set_num_threads(self.settings.torch_threads)
            self.pool = ModelPool(
                max_bases=self.settings.max_base_models, device=self.settings.device
            )
        return self.pool

    def batch_sizer(self) -> BatchSizer:
        if self.batcher is None:
            self.batcher = BatchSizer(cap=self.settings.batch_size)
        return self.batcher

    def evaluators(self, names: tuple[str, ...]) -> EvaluatorSet:
        if names not in self.evaluator_sets:
            self.evaluator_sets[names] = EvaluatorSet(names, self.settings)
        return self.evaluator_sets[names]


def check_continue(ctx: WorkerContext, evaluation_id: int, heartbeat: lease.Heartbeat) -> None:
    """Raise :class:`EvaluationCancelled` when the lease was lost or a cancel was asked."""
    if heartbeat.lost.is_set():
        raise EvaluationCancelled("lease lost to another worker; stopping")
    with unit_of_work(ctx.factory, write=False) as session:
        evaluation = session.get_one(Evaluation, evaluation_id)
        if evaluation.cancel_requested:
            raise EvaluationCancelled("cancelled on request")
