"""A Hugging Face ``Trainer`` callback that submits every saved checkpoint to tunegate.

``Trainer(..., callbacks=[TunegateCallback(family="support-bot", dataset="support-eval",
sweep="2026-w48")])`` (TRL's ``SFTTrainer`` is a ``Trainer``). On each ``on_save``:

1. the checkpoint's *model files* are staged in ``<output_dir>/tunegate/checkpoint-N``
   (hard links where the file system allows, else copies): the adapter folder of a PEFT
   model or the model folder of a full fine-tune, without the optimizer, scheduler and RNG
   pickles a Trainer checkpoint also holds (tunegate refuses pickles), so the staged folder
   survives ``save_total_limit`` rotating the checkpoint away;
2. a background thread registers it (by path, or uploaded when the server cannot see the
   path — :func:`service.cli.submission.submit_candidate`) with ``args.learning_rate``,
   the step and the epoch as tags (plus the scheduler's current rate as the tag
   ``scheduler_lr`` when it differs), and ``trainer_state.json`` as the training log. One
   ``Idempotency-Key`` per checkpoint, reused on every retry, so a checkpoint is
   registered at most once. A training log the server refuses (too few logged steps for
   its diagnosis, early in a run) is dropped and the checkpoint registered without it.

Training is never blocked or broken by tunegate: a server that is down or refuses the
checkpoint gives a logged warning, never an exception. ``on_train_end`` waits, at most
``wait_timeout`` seconds in all, for the pending submissions and then for each verdict, and
logs one line per checkpoint. :attr:`TunegateCallback.results` holds what happened.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from service.checkpoints import ADAPTER_CONFIG, CODE_SUFFIXES, PICKLE_SUFFIXES
from service.cli.client import (
    ClientError,
    InvalidTrainingLogError,
    RetryPolicy,
    TunegateClient,
    new_idempotency_key,
)
from service.cli.submission import CandidateRequest, submit_candidate, wait_for_decision

logger = logging.getLogger("tunegate.integrations")

TRAINER_STATE = "trainer_state.json"
_STAGE_DIR = "tunegate"


@dataclass
class Submitted:
    """One saved checkpoint and what tunegate made of it (filled in as it happens)."""

    step: int
    checkpoint: Path
    learning_rate: float
    tags: dict[str, str]
    candidate_id: int | None = None
    evaluation_id: int | None = None
    verdict: str | None = None
    decision_id: int | None = None
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        """One log line: the verdict, or why there is none."""
        where = f"tunegate: step {self.step} ({self.checkpoint.name})"
        if self.error is not None:
            return f"{where}: {self.error}"
        if self.verdict is not None:
            return (
                f"{where}: candidate {self.candidate_id}, verdict {self.verdict} "
                f"(decision {self.decision_id})"
            )
        if self.evaluation_id is not None:
            return (
                f"{where}: candidate {self.candidate_id}, evaluation {self.evaluation_id} "
                f"not decided yet (`tunegate eval show {self.evaluation_id}`)"
            )
        return f"{where}: candidate {self.candidate_id} registered"


def stage_checkpoint(checkpoint: Path, target: Path) -> Path:
    """Hard-link (or copy) ``checkpoint``'s model files into ``target``, leaving out pickles,
    code and ``trainer_state.json``. Returns ``target``; an existing one is replaced."""
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for source in sorted(checkpoint.rglob("*")):
        suffix = source.suffix.lower()
        if not source.is_file() or source.is_symlink() or source.name == TRAINER_STATE:
            continue
        if suffix in PICKLE_SUFFIXES or suffix in CODE_SUFFIXES:
            continue
        dest = tmp / source.relative_to(checkpoint)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copy2(source, dest)
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _scheduler_lr(kwargs: Mapping[str, Any]) -> float | None:
    scheduler = kwargs.get("lr_scheduler")
    if scheduler is None or not hasattr(scheduler, "get_last_lr"):
        return None
    rates = scheduler.get_last_lr()
    return float(rates[0]) if rates else None


class TunegateCallback(TrainerCallback):  # type: ignore[misc]
    """Submit each checkpoint the Trainer saves to a tunegate server (see the module doc).

    ``url`` / ``token`` default to ``TUNEGATE_URL`` / ``TUNEGATE_TOKEN``. ``dataset``
    (``name`` or ``name@version``) queues an evaluation with each registration; without it
    candidates are only registered. ``upload``: ``None`` registers by path and uploads when
    the server cannot see it, ``True`` always uploads, ``False`` never does.
    ``wait_timeout``: seconds ``on_train_end`` waits in all (0: do not wait for verdicts).
    """

    def __init__(
        self,
        family: str,
        dataset: str | None = None,
        sweep: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        tags: Mapping[str, str] | None = None,
        training_run: str | None = None,
        upload: bool | None = None,
        wait_timeout: float = 600.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.family = family
        self.dataset = dataset
        self.sweep = sweep
        self.url = url
        self.token = token
        self.tags = dict(tags or {})
        self.training_run = training_run
        self.upload = upload
        self.wait_timeout = wait_timeout
        self.retry = retry or RetryPolicy(attempts=4, backoff_seconds=1.0)
        self.results: list[Submitted] = []
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunegate-submit")

    # --- Trainer events ---------------------------------------------------------------

    def on_save(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        try:
            item = self._prepare(args, state, kwargs)
        except Exception as exc:  # staging must never break training
            logger.warning("tunegate: could not stage step %s: %s", state.global_step, exc)
            return
        with self._lock:
            self.results.append(item)
            self._futures.append(self._pool.submit(self._submit, item))

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        self.wait(self.wait_timeout)
        for item in self.results:
            logger.log(logging.WARNING if item.error else logging.INFO, item.line())

    # --- the work ---------------------------------------------------------------------

    def _prepare(
        self, args: TrainingArguments, state: TrainerState, kwargs: Mapping[str, Any]
    ) -> Submitted:
        name = f"checkpoint-{state.global_step}"
        checkpoint = Path(args.output_dir) / name
        staged = stage_checkpoint(checkpoint, Path(args.output_dir) / _STAGE_DIR / name)
        log: Path | None = None
        if (checkpoint / TRAINER_STATE).is_file():  # copied now: rotation may delete it
            log = Path(args.output_dir) / _STAGE_DIR / "logs" / name / TRAINER_STATE
            log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkpoint / TRAINER_STATE, log)
        tags = {**self.tags, "step": str(state.global_step)}
        if state.epoch is not None:
            tags["epoch"] = f"{state.epoch:g}"
        scheduled = _scheduler_lr(kwargs)
        if scheduled is not None and not _same_rate(scheduled, args.learning_rate):
            tags["scheduler_lr"] = f"{scheduled:.6g}"
        item = Submitted(state.global_step, staged, float(args.learning_rate), tags)
        item.extra["training_log"] = log
        item.extra["run"] = self.training_run or args.run_name
        return item

    def _submit(self, item: Submitted) -> None:
        log = item.extra.get("training_log")
        run = item.extra.get("run")
        request = CandidateRequest(
            checkpoint=item.checkpoint,
            family=self.family,
            learning_rate=item.learning_rate,
            kind="lora" if (item.checkpoint / ADAPTER_CONFIG).is_file() else "full",
            sweep=self.sweep,
            dataset=self.dataset,
            training_log=log if isinstance(log, Path) else None,
            tags=item.tags,
            name=f"{run}/{item.checkpoint.name}"[-200:] if run else item.checkpoint.name,
            training_run=str(run)[-200:] if run else None,
        )
        try:
            with self._client() as client:
                try:
                    body = submit_candidate(
                        client, request, upload=self.upload, idempotency_key=new_idempotency_key()
                    )
                except InvalidTrainingLogError as exc:
                    # e.g. too few logged steps yet: the checkpoint still counts
                    item.extra["training_log_refused"] = exc.why
                    logger.warning(
                        "tunegate: step %s: training log refused: %s", item.step, exc.why
                    )
                    request = replace(request, training_log=None)
                    body = submit_candidate(
                        client, request, upload=self.upload, idempotency_key=new_idempotency_key()
                    )
        except ClientError as exc:
            item.error = f"not submitted: {exc.line()}"
            logger.warning(item.line())
            return
        except Exception as exc:  # never let a submission take the trainer down
            item.error = f"not submitted: {type(exc).__name__}: {exc}"
            logger.warning(item.line())
            return
        item.candidate_id = body.id
        item.evaluation_id = body.evaluation_id
        logger.info(item.line())

    def wait(self, timeout: float) -> list[Submitted]:
        """Wait (at most ``timeout`` s in all) for pending submissions, then for each
        evaluation's verdict; returns :attr:`results`. Never raises for tunegate's sake."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            futures = list(self._futures)
        wait_futures(futures, timeout=max(deadline - time.monotonic(), 0.0))
        if timeout <= 0:
            return self.results
        pending = [r for r in self.results if r.evaluation_id is not None and r.verdict is None]
        if not pending:
            return self.results
        try:
            with self._client() as client:
                for item in pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._verdict(client, item, left)
        except Exception as exc:
            logger.warning("tunegate: could not read verdicts: %s", exc)
        return self.results

    def _verdict(self, client: TunegateClient, item: Submitted, left: float) -> None:
        assert item.evaluation_id is not None
        try:
            outcome = wait_for_decision(client, item.evaluation_id, timeout=left)
        except ClientError:
            return  # not decided in time: the line says where to look
        if outcome.decision is None:
            evaluation = outcome.evaluation
            item.error = f"evaluation {item.evaluation_id} {evaluation.status}: {evaluation.error}"
            return
        item.verdict = outcome.decision.verdict
        item.decision_id = outcome.decision.id

    def _client(self) -> TunegateClient:
        return TunegateClient(self.url, self.token, retry=self.retry)

    def close(self) -> None:
        """Stop the submission thread (pending submissions are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _same_rate(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 + 1e-6 * abs(b)
