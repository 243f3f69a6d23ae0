"""One evaluation's phases, whether it runs alone or in a sweep group (:mod:`service.engine.job`).

:func:`prepare` checks the checkpoint, keys the outputs and reuses what a finished evaluation
with the same key stored (zero forward passes); :func:`probe_adapter` records that a LoRA
changes the model; :func:`by_likelihood_and_perplexity` runs the forward passes besides
generation; :func:`finish_scores` scores stored outputs (reused or resumed) and writes the
aggregates; :func:`close` records the terminal status, and the gate decisions it makes due, if
the worker still holds the lease. Each phase commits its own units of work, so a crash between
any two resumes from what is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from evaluators import loglikelihood as loglikelihood_metrics
from evaluators import registry
from service import decisions
from service.checkpoint_paths import resolve_within_roots
from service.checkpoints import check_adapter_matches_base, inspect_checkpoint, tensor_shapes
from service.db.models import Evaluation
from service.db.session import unit_of_work
from service.engine import lease, reuse, storage
from service.engine.aggregates import AggregateRow, ExampleScope, compute_aggregates
from service.engine.builtin import BUILTIN_HUB_NAMES, BUILTIN_MODELS, ensure_builtin
from service.engine.context import WorkerContext
from service.engine.loading import LoadedModel
from service.engine.loglikelihood import is_loglikelihood_record
from service.engine.model_passes import heldout_perplexity, score_by_likelihood
from service.engine.probe import BaseLogits, assert_adapter_changes_model
from service.engine.provenance import folder_weight_digests, library_versions
from service.engine.scoring import EvaluatorSet
from service.errors import EvaluationCancelled, ModelLoadError, TunegateError
from service.lifecycle import CANCELLED, FAILED, SUCCEEDED, EvaluationStatus
from service.queries.results import done_keys, scores_by_example
from service.settings import Settings

log = logging.getLogger("tunegate.job")


#: Scores that come from the model's forward passes, not from output text: stored and
#: reused with the outputs, never re-scored from them.
MODEL_SCORERS = frozenset({loglikelihood_metrics.NAME})


def resolve_base_model(name: str, settings: Settings) -> Path:
    """A built-in name (converted once into the data dir) or a folder under the model roots."""
    if name in BUILTIN_MODELS:
        return ensure_builtin(name, settings.resolved_data_dir / "models")
    return resolve_within_roots(Path(name), settings.allowed_model_roots)


def evaluator_names(config: dict[str, Any]) -> tuple[str, ...]:
    names = config.get("evaluators") or registry.default_evaluators()
    return tuple(sorted(names))


def outcome(evaluation_id: int, exc: Exception) -> tuple[EvaluationStatus, str]:
    """The terminal status and error message an exception in a job stands for."""
    if isinstance(exc, EvaluationCancelled):
        return CANCELLED, exc.detail
    if isinstance(exc, TunegateError):
        return FAILED, f"{type(exc).__name__}: {exc.detail}"
    log.error("evaluation %s crashed", evaluation_id, exc_info=exc)
    return FAILED, f"{type(exc).__name__}: {exc}"


def close(
    ctx: WorkerContext, evaluation_id: int, status: EvaluationStatus, error: str | None
) -> bool:
    """Record the terminal status (and due decisions) if this worker still holds the lease."""
    with unit_of_work(ctx.factory) as session:
        held = storage.finish(session, evaluation_id, ctx.worker_id, status, error)
        lease.log_event(session, evaluation_id, ctx.worker_id, "released" if held else "lost")
        if held and status == SUCCEEDED:
            _decide_due(session, evaluation_id)
    return held


def _decide_due(session: Session, evaluation_id: int) -> None:
    """Store the gate decisions this success makes due, in the unit of work that records the
    success: a reader who sees ``succeeded`` also sees the decision. A decision that cannot
    be computed is logged and left out (``POST /v1/decisions`` retries it); the status stays."""
    try:
        with session.begin_nested():
            decisions.decide_ready(session, evaluation_id)
    except Exception:
        log.exception("gate decision after evaluation %s failed", evaluation_id)


@dataclass
class Prepared:
    """An evaluation ready for its model phase: what to load, what is already stored."""

    evaluation_id: int
    spec: storage.JobSpec
    scorers: EvaluatorSet
    generation_config: dict[str, Any]
    provenance: dict[str, Any]
    model_dir: Path
    adapter_dir: Path | None
    model_rows: list[AggregateRow]
    n_done: int

    @property
    def needs_perplexity(self) -> bool:
        return bool(self.spec.heldout) and not self.model_rows

    @property
    def needs_model(self) -> bool:
        return self.n_done < len(self.spec.examples) or self.needs_perplexity


def probe_adapter(
    prepared: Prepared,
    loaded: LoadedModel,
    ctx: WorkerContext,
    base_logits: BaseLogits | None = None,
) -> None:
    """The adapter-applied probe (a LoRA only), recorded in the provenance before any row
    (``base_logits``: the base's side, shared by the adapters of a group)."""
    if prepared.adapter_dir is None:
        return
    probe = assert_adapter_changes_model(loaded, base_logits=base_logits)
    prepared.provenance["adapter_probe"] = {
        "max_abs_delta": probe.max_abs_delta,
        "mean_abs_delta": probe.mean_abs_delta,
        "n_tokens": probe.n_tokens,
    }
    with unit_of_work(ctx.factory) as session:
        session.get_one(Evaluation, prepared.evaluation_id).provenance = prepared.provenance


def by_likelihood_and_perplexity(
    prepared: Prepared, loaded: LoadedModel, ctx: WorkerContext, heartbeat: lease.Heartbeat
) -> None:
    """The forward passes besides generation: log-likelihood records, held-out perplexity."""
    score_by_likelihood(prepared.spec, ctx, loaded, prepared.generation_config, heartbeat)
    if prepared.needs_perplexity:
        prepared.model_rows = heldout_perplexity(prepared.spec, loaded, ctx)


def prepare(evaluation_id: int, ctx: WorkerContext) -> Prepared:
    """Check the checkpoint, key the outputs, reuse what a same-key evaluation stored."""
    settings = ctx.settings
    with unit_of_work(ctx.factory, write=False) as session:
        spec = storage.load_job(session, evaluation_id)

    names = evaluator_names(spec.config)
    scorers = ctx.evaluators(names)
    base_dir = resolve_base_model(spec.base_model, settings)
    candidate_dir: Path | None = None
    candidate_digests = spec.candidate_digests
    if spec.candidate_kind in ("lora", "full"):
        if not spec.checkpoint_path:
            raise ModelLoadError(f"candidate {spec.candidate_id} has no checkpoint path")
        roots = [*settings.allowed_checkpoint_roots, settings.uploads_dir]
        info = inspect_checkpoint(Path(spec.checkpoint_path), roots, kind=spec.candidate_kind)  # type: ignore[arg-type]
        candidate_dir = info.path
        candidate_digests = dict(info.digests)
        if info.kind == "lora":
            # the base's shapes from its safetensors headers (nothing loaded); for a
            # built-in base the adapter's recorded hub name must name it too
            names = BUILTIN_HUB_NAMES.get(spec.base_model, ())
            check_adapter_matches_base(info, tensor_shapes(base_dir), base_names=names)
    base_digests = folder_weight_digests(base_dir) if spec.candidate_kind != "full" else {}
    generation_config: dict[str, Any] = {
        "max_new_tokens": int(spec.config.get("max_new_tokens", 64)),
        "chat_template": bool(spec.config.get("chat_template", True)),
        "seed": int(spec.config.get("seed", 0)),
    }
    if spec.config.get("system") is not None:  # absent when unset: older cache keys hold
        generation_config["system"] = str(spec.config["system"])
    versions = dict(scorers.versions)
    key_config = dict(generation_config)
    if any(is_loglikelihood_record(e) for e in spec.examples):
        # log-likelihood scores come from forward passes: they belong with the outputs
        versions[loglikelihood_metrics.NAME] = loglikelihood_metrics.VERSION
        key_config["loglikelihood"] = loglikelihood_metrics.VERSION
    pool = ctx.model_pool()
    dtype = str(pool.dtype).removeprefix("torch.")
    key = reuse.outputs_key(
        base_digests=base_digests,
        candidate_digests=candidate_digests,
        dataset_digest=spec.dataset_digest,
        generation=key_config,
        dtype=dtype,
    )
    provenance: dict[str, Any] = {
        "dataset_digest": spec.dataset_digest,
        "base_model": spec.base_model,
        "base_model_digests": base_digests,
        "candidate_digests": candidate_digests,
        "generation": generation_config,
        "dtype": dtype,
        "device": str(pool.device),
        "evaluators": versions,
        "evaluator_options": scorers.options,
        "libraries": library_versions(),
        "worker": ctx.worker_id,
    }
    with unit_of_work(ctx.factory) as session:
        evaluation = session.get_one(Evaluation, evaluation_id)
        evaluation.progress_total = len(spec.examples)
        evaluation.cache_key = key
        source = reuse.reuse_outputs(session, key, evaluation_id, with_scores_of=MODEL_SCORERS)
        if source is not None:
            evaluation.reused_from_id = source
        if evaluation.reused_from_id is not None:
            provenance["reused_from"] = evaluation.reused_from_id
        reuse.copy_scores(session, key, evaluation_id, scorers.identities)
        model_rows = reuse.model_aggregates(session, evaluation_id)
        n_done = len(done_keys(session, evaluation_id))
        evaluation.provenance = {**(evaluation.provenance or {}), **provenance}

    model_dir = candidate_dir if spec.candidate_kind == "full" else base_dir
    assert model_dir is not None
    return Prepared(
        evaluation_id=evaluation_id,
        spec=spec,
        scorers=scorers,
        generation_config=generation_config,
        provenance=provenance,
        model_dir=model_dir,
        adapter_dir=candidate_dir if spec.candidate_kind == "lora" else None,
        model_rows=model_rows,
        n_done=n_done,
    )


def finish_scores(prepared: Prepared, ctx: WorkerContext, generated: set[str]) -> EvaluationStatus:
    """Score what was stored before this run (reused or resumed) and write the aggregates.

    Both steps can be cut short by a crash and rerun: scores are committed in chunks and
    only the missing ones are computed again; the aggregates are computed from the stored
    scores outside any transaction, then replaced whole in one short unit of work.
    """
    spec, evaluation_id = prepared.spec, prepared.evaluation_id
    reuse.score_stored_outputs(
        ctx.factory,
        evaluation_id,
        [e for e in spec.examples if not is_loglikelihood_record(e)],
        prepared.scorers,
        exclude=generated,
        keep=MODEL_SCORERS,
        chunk_size=ctx.settings.score_chunk_size,
        after_chunk=ctx.after_score_chunk,
    )
    with unit_of_work(ctx.factory, write=False) as session:
        scores = scores_by_example(session, evaluation_id)
    scopes = [ExampleScope(e.id, e.domain, e.cohort) for e in spec.examples]
    rows = compute_aggregates(scopes, scores) + prepared.model_rows
    with unit_of_work(ctx.factory) as session:
        storage.write_aggregates(session, evaluation_id, rows)
        if ctx.writing_aggregates is not None:
            ctx.writing_aggregates(evaluation_id, len(rows))
    return SUCCEEDED
