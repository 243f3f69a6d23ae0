"""Each finished evaluation as an MLflow run (the ``mlflow`` extra: ``mlflow-skinny``).

With ``TUNEGATE_MLFLOW_TRACKING_URI`` set, the API process runs :class:`MlflowSync`: every
few seconds it logs the evaluations that succeeded since — a candidate's once its gate
decision is stored (or its baseline ended without one), a baseline's at once — into the
experiment ``<prefix>/<family>``:

- **params**: learning rate, family, candidate id / name / kind, base model, sweep,
  dataset ``name@version`` and digest, role (``candidate`` | ``baseline``), generation config;
- **tags**: ``tunegate.family``, ``tunegate.sweep``, ``tunegate.candidate``,
  ``tunegate.evaluation``, ``tunegate.role``, ``tunegate.verdict``, ``tunegate.decision_id``;
- **metrics**: every aggregate mean — ``<metric>`` over all examples, ``<metric>.in`` /
  ``<metric>.out`` by domain, ``<metric>.cohort.<name>`` by cohort, model metrics
  (perplexity) by name;
- **artifacts**: ``decision.json`` (verdict, summary, every rule) and ``provenance.json``.

So MLflow's own compare view shows a sweep: filter on ``tags."tunegate.sweep"``, plot a
metric against ``learning_rate``. Bookkeeping is the ``mlflow_runs`` table (one row per
evaluation, claimed before logging, so two API processes never log one twice); a failure
is retried with backoff and never touches the evaluation.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from service.db.base import utcnow
from service.db.models import (
    Aggregate,
    Candidate,
    Dataset,
    DatasetVersion,
    Evaluation,
    Family,
    GateDecision,
    MlflowRun,
)
from service.db.session import unit_of_work
from service.lifecycle import CANCELLED, FAILED, SUCCEEDED
from service.queries.decisions import latest_decision
from service.queries.results import aggregates_of
from service.settings import Settings

log = logging.getLogger("tunegate.mlflow")

MAX_ATTEMPTS = 5
_BATCH = 20
_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


@dataclass(frozen=True)
class RunRecord:
    """What one MLflow run holds for one evaluation."""

    experiment: str
    run_name: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    artifacts: dict[str, Any] = field(default_factory=dict)


def _metric_name(row: Aggregate) -> str | None:
    if row.scope in ("all", "model"):
        name = row.metric
    elif row.scope == "domain":
        name = f"{row.metric}.{row.scope_value}"
    elif row.scope == "cohort":
        name = f"{row.metric}.cohort.{row.scope_value}"
    else:
        return None
    return _NAME.sub("_", name)[:250]


def run_record(session: Session, evaluation_id: int, prefix: str) -> RunRecord:
    """The run of a finished evaluation, read from the database."""
    evaluation = session.get_one(Evaluation, evaluation_id)
    candidate = session.get_one(Candidate, evaluation.candidate_id)
    family = session.get_one(Family, candidate.family_id)
    version = session.get_one(DatasetVersion, evaluation.dataset_version_id)
    dataset = session.get_one(Dataset, version.dataset_id)
    role = "baseline" if evaluation.baseline_evaluation_id is None else "candidate"
    decision = latest_decision(session, evaluation_id)
    params = {
        "learning_rate": f"{candidate.learning_rate:g}" if candidate.learning_rate else "",
        "family": family.name,
        "candidate_id": str(candidate.id),
        "candidate_name": candidate.name or "",
        "kind": candidate.kind,
        "base_model": candidate.base_model,
        "sweep": candidate.sweep or "",
        "dataset": f"{dataset.name}@{version.version}",
        "dataset_digest": version.digest,
        "role": role,
    }
    params |= {f"generation.{k}": str(v) for k, v in sorted((evaluation.config or {}).items())}
    tags = {
        "tunegate.family": family.name,
        "tunegate.sweep": candidate.sweep or "",
        "tunegate.candidate": str(candidate.id),
        "tunegate.evaluation": str(evaluation.id),
        "tunegate.role": role,
    }
    artifacts: dict[str, Any] = {"provenance.json": dict(evaluation.provenance or {})}
    if decision is not None:
        tags |= {"tunegate.verdict": decision.verdict, "tunegate.decision_id": str(decision.id)}
        artifacts["decision.json"] = {
            "id": decision.id,
            "verdict": decision.verdict,
            "summary": decision.summary,
            "baseline_evaluation_id": decision.baseline_evaluation_id,
            "rules": decision.rules,
        }
    metrics: dict[str, float] = {}
    for row in aggregates_of(session, evaluation_id):
        name = _metric_name(row)
        if name is not None:
            metrics[name] = float(row.mean)
    lr = f" lr={candidate.learning_rate:g}" if candidate.learning_rate else ""
    name = f"{candidate.name or f'candidate-{candidate.id}'}{lr} ({role})"
    return RunRecord(f"{prefix}/{family.name}", name, params, tags, metrics, artifacts)


def _ready(session: Session, limit: int) -> list[int]:
    """Succeeded evaluations not yet claimed whose decision (if any is coming) is stored."""
    baseline = aliased(Evaluation)
    decided = exists().where(GateDecision.candidate_evaluation_id == Evaluation.id)
    baseline_ended = exists().where(
        baseline.id == Evaluation.baseline_evaluation_id, baseline.status.in_((FAILED, CANCELLED))
    )
    logged = exists().where(MlflowRun.evaluation_id == Evaluation.id)
    query = (
        select(Evaluation.id)
        .where(
            Evaluation.status == SUCCEEDED,
            ~logged,
            or_(Evaluation.baseline_evaluation_id.is_(None), decided, baseline_ended),
        )
        .order_by(Evaluation.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def _claim(factory: sessionmaker[Session], row_id: int, lease: timedelta) -> bool:
    now = utcnow()
    with unit_of_work(factory) as session:
        result = session.execute(
            update(MlflowRun)
            .where(
                and_(MlflowRun.id == row_id, MlflowRun.status == "pending"),
                MlflowRun.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + lease)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


Logger = Callable[[str, RunRecord], str]


def sync_once(factory: sessionmaker[Session], settings: Settings, logger: Logger) -> int:
    """One pass: queue newly finished evaluations, log the due ones; returns how many
    were logged. ``logger(tracking_uri, record)`` returns the MLflow run id."""
    with unit_of_work(factory, write=False) as session:
        ready = _ready(session, _BATCH)
    for evaluation_id in ready:
        try:
            with unit_of_work(factory) as session:
                session.add(MlflowRun(evaluation_id=evaluation_id))
        except IntegrityError:
            pass  # another process queued it
    with unit_of_work(factory, write=False) as session:
        due = list(
            session.scalars(
                select(MlflowRun.id)
                .where(MlflowRun.status == "pending", MlflowRun.next_attempt_at <= utcnow())
                .order_by(MlflowRun.id)
                .limit(_BATCH)
            )
        )
    logged = 0
    uri = settings.mlflow_tracking_uri or ""
    for row_id in due:
        if not _claim(factory, row_id, timedelta(minutes=10)):
            continue
        with unit_of_work(factory, write=False) as session:
            row = session.get_one(MlflowRun, row_id)
            record = run_record(session, row.evaluation_id, settings.mlflow_experiment_prefix)
        try:
            run_id, error = logger(uri, record), None
        except Exception as exc:  # MLflow down, a bad URI: retried, never raised
            run_id, error = None, f"{type(exc).__name__}: {exc}"[:1000]
            log.warning("evaluation not logged to MLflow: %s", error)
        with unit_of_work(factory) as session:
            row = session.get_one(MlflowRun, row_id)
            row.attempts += 1
            if run_id is not None:
                row.status, row.run_id, row.logged_at, row.error = "logged", run_id, utcnow(), None
                logged += 1
            elif row.attempts >= MAX_ATTEMPTS:
                row.status, row.error = "failed", error
            else:
                row.error = error
                row.next_attempt_at = utcnow() + timedelta(seconds=30 * 2 ** (row.attempts - 1))
    return logged


def log_to_mlflow(tracking_uri: str, record: RunRecord) -> str:
    """Create the run with MLflow's client; returns its run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(record.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(record.experiment)
    )
    run = client.create_run(experiment_id, run_name=record.run_name, tags=record.tags)
    run_id: str = run.info.run_id
    now = int(utcnow().timestamp() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in sorted(record.metrics.items())],
        params=[Param(k, v[:6000]) for k, v in sorted(record.params.items())],
        tags=[RunTag(k, v) for k, v in sorted(record.tags.items())],
    )
    for name, content in record.artifacts.items():
        client.log_dict(run_id, content, name)
    client.set_terminated(run_id)
    return run_id


class MlflowSync:
    """A daemon thread running :func:`sync_once` every ``mlflow_poll_seconds``."""

    def __init__(
        self, factory: sessionmaker[Session], settings: Settings, logger: Logger = log_to_mlflow
    ) -> None:
        self.factory, self.settings, self.logger = factory, settings, logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tunegate-mlflow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sync_once(self.factory, self.settings, self.logger)
            except Exception:
                log.exception("MLflow sync pass failed")
            self._stop.wait(self.settings.mlflow_poll_seconds)
