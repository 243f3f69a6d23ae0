"""A sweep in one pass: several LoRA candidates of one base (and their baseline) together.

When several evaluations of the same base model, dataset version and generation config are
waiting, a worker runs them as one group (:func:`run_group`): the base is loaded once, every
adapter is loaded on it, and each ``generate`` call serves rows of several evaluations, each
row through its own adapter (PEFT mixed-adapter batches: ``adapter_names=`` per row,
``"__base__"`` for the baseline). Batches stay as large as the auto batch allows even when
each evaluation alone would have too few rows to fill one.

Everything else stays per evaluation, exactly as if it had run alone: its own lease and
heartbeat, checkpoint checks, outputs key and reuse (:func:`~service.engine.job.prepare`),
adapter-applied probe, provenance, chunked writes with progress (a chunk of the group is
written as one unit of work per evaluation), log-likelihood records and perplexity (under its
own adapter), aggregates, terminal status and due decisions. A cancelled or failing
evaluation leaves the group at the next chunk; a crash leaves each evaluation with the rows of
the chunks committed so far, and its next run (alone or in a group) resumes from them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import Candidate, Evaluation
from service.db.session import unit_of_work
from service.engine import lease, storage
from service.engine.context import WorkerContext, check_continue
from service.engine.generation import encode_prompts, generate
from service.engine.job import (
    Prepared,
    by_likelihood_and_perplexity,
    close,
    finish_scores,
    outcome,
    prepare,
    probe_adapter,
    run_evaluation,
)
from service.engine.loading import LoadedModel
from service.engine.loglikelihood import is_loglikelihood_record
from service.engine.probe import BaseLogits
from service.errors import EvaluationCancelled
from service.lifecycle import FAILED, EvaluationStatus
from service.queries.results import done_keys

log = logging.getLogger("tunegate.sweep")

BASE_ROW = "__base__"


def group_key(kind: str, base_model: str, dataset_version_id: int, config: Any) -> str | None:
    """Evaluations with the same key can share batches; full fine-tunes share with none."""
    if kind not in ("base", "lora"):
        return None
    blob = json.dumps(config or {}, sort_keys=True, default=str)
    return f"{base_model}\x00{dataset_version_id}\x00{blob}"


def weights_identity(kind: str, base_model: str, digests: dict[str, str] | None) -> str:
    """The same weights submitted twice have one identity (their files' digests)."""
    return json.dumps([kind, base_model, digests or {}], sort_keys=True)


def _grouping_rows(session: Session, *where: Any) -> list[Any]:
    """(id, kind, base model, dataset version, config, digests) of the evaluations matching
    ``where``, oldest first: what :func:`group_key` and :func:`weights_identity` read."""
    return list(
        session.execute(
            select(
                Evaluation.id,
                Candidate.kind,
                Candidate.base_model,
                Evaluation.dataset_version_id,
                Evaluation.config,
                Candidate.digests,
            )
            .join(Candidate, Candidate.id == Evaluation.candidate_id)
            .where(*where)
            .order_by(Evaluation.created_at, Evaluation.id)
        ).all()
    )


def _partition(ids: Sequence[int], rows: Sequence[Any], size: int) -> list[list[int]]:
    """``ids`` in groups of at most ``size`` sharing a :func:`group_key`, in the order of their
    first member; the same weights twice in one group go to groups of their own, last."""
    keys = {row[0]: group_key(row[1], row[2], row[3], row[4]) for row in rows}
    identities = {row[0]: weights_identity(row[1], row[2], row[5]) for row in rows}
    out: list[list[int]] = []
    repeats: list[list[int]] = []
    open_groups: dict[str, list[int]] = {}
    seen: dict[str, set[str]] = {}
    for evaluation_id in ids:
        key = keys.get(evaluation_id)
        identity = identities.get(evaluation_id, "")
        if key is not None and identity in seen.get(key, set()):
            repeats.append([evaluation_id])
            continue
        group = open_groups.get(key) if key is not None else None
        if group is None or len(group) >= size:
            group = [evaluation_id]
            out.append(group)
            if key is not None:
                open_groups[key] = group
                seen[key] = set()
        else:
            group.append(evaluation_id)
        if key is not None:
            seen[key].add(identity)
    return out + repeats


def groups(factory: sessionmaker[Session], ids: Sequence[int], size: int) -> list[list[int]]:
    """``ids`` (claimable evaluations, oldest first) in groups that can run together, at most
    ``size`` each, in the order of their oldest member.

    The same weights twice in one group would both be generated; the later one is held back
    in a group of its own, run after the rest, so that it reuses the first one's outputs (as
    two submissions of one checkpoint do when they run one after the other).
    """
    if size <= 1 or len(ids) <= 1:
        return [[i] for i in ids]
    with unit_of_work(factory, write=False) as session:
        rows = _grouping_rows(session, Evaluation.id.in_(ids))
    return _partition(ids, rows, size)


def siblings(factory: sessionmaker[Session], evaluation_id: int, size: int) -> list[int]:
    """Claimable evaluations that can run in one group with ``evaluation_id`` (itself first):
    the first group of :func:`groups` over it and the claimable evaluations of its base and
    dataset version."""
    if size <= 1:
        return [evaluation_id]
    with unit_of_work(factory, write=False) as session:
        own = _grouping_rows(session, Evaluation.id == evaluation_id)
        if not own or group_key(*own[0][1:5]) is None:
            return [evaluation_id]
        others = _grouping_rows(
            session,
            lease.claimable(utcnow()),
            Evaluation.id != evaluation_id,
            Evaluation.dataset_version_id == own[0][3],
            Candidate.base_model == own[0][2],
            Candidate.kind.in_(("base", "lora")),
        )
    rows = own + others
    return _partition([row[0] for row in rows], rows, size)[0]


def gather_delay(
    factory: sessionmaker[Session], quiet: float, evaluation_id: int | None = None
) -> float:
    """Seconds to wait, so that evaluations submitted together (a sweep) run as one group:
    until the newest claimable evaluation that still has examples to generate was queued
    ``quiet`` seconds ago (at most ``quiet``). 0 when none waits for generation (a rescore,
    a finished resume: nothing to batch) or when ``evaluation_id`` is no longer claimable
    (a sibling's group ran it)."""
    if quiet <= 0:
        return 0.0
    now = utcnow()
    with unit_of_work(factory, write=False) as session:
        if evaluation_id is not None and not session.scalar(
            select(Evaluation.id).where(Evaluation.id == evaluation_id, lease.claimable(now))
        ):
            return 0.0
        newest = session.scalar(
            select(Evaluation.created_at)
            .where(
                lease.claimable(now),
                Evaluation.progress_done < Evaluation.progress_total,
            )
            .order_by(Evaluation.created_at.desc())
            .limit(1)
        )
    if newest is None:
        return 0.0
    if newest.tzinfo is None:  # SQLite keeps no zone; every timestamp here is UTC
        newest = newest.replace(tzinfo=UTC)
    age = (now - newest).total_seconds()
    return min(quiet, max(0.0, quiet - age))


def run_group(evaluation_ids: Sequence[int], ctx: WorkerContext) -> dict[int, str | None]:
    """Run (or resume) evaluations together; each one's final status, or None if not claimed.

    A single id is simply :func:`run_evaluation`.
    """
    if len(evaluation_ids) == 1:
        return {evaluation_ids[0]: run_evaluation(evaluation_ids[0], ctx)}
    settings = ctx.settings
    members: list[_Member] = []
    results: dict[int, str | None] = dict.fromkeys(evaluation_ids)
    with ExitStack() as stack:
        for evaluation_id in evaluation_ids:
            if lease.claim(ctx.factory, evaluation_id, ctx.worker_id, settings.lease_seconds):
                heartbeat = lease.Heartbeat(
                    ctx.factory,
                    evaluation_id,
                    ctx.worker_id,
                    lease_seconds=settings.lease_seconds,
                    interval=settings.heartbeat_seconds,
                )
                stack.enter_context(heartbeat)
                members.append(_Member(evaluation_id, heartbeat))
        try:
            _run_members(members, ctx)
        except Exception as exc:  # a failure of the shared part: every member still open
            for member in members:
                if member.status is None:
                    member.status, member.error = outcome(member.evaluation_id, exc)
        finally:
            for member in members:
                status = member.status or FAILED
                error = member.error if member.status else "the job stopped before it finished"
                held = close(ctx, member.evaluation_id, status, error)
                results[member.evaluation_id] = status if held else None
    return results


@dataclass
class _Member:
    evaluation_id: int
    heartbeat: lease.Heartbeat
    prepared: Prepared | None = None
    adapter_name: str = BASE_ROW
    generated: set[str] = field(default_factory=set)
    status: EvaluationStatus | None = None
    error: str | None = None

    @property
    def open(self) -> bool:
        return self.status is None

    def fail(self, exc: Exception) -> None:
        self.status, self.error = outcome(self.evaluation_id, exc)


def _run_members(members: list[_Member], ctx: WorkerContext) -> None:
    for member in members:
        try:
            member.prepared = prepare(member.evaluation_id, ctx)
        except Exception as exc:
            member.fail(exc)
    active = [m for m in members if m.open and m.prepared is not None and m.prepared.needs_model]
    pool = ctx.model_pool()
    # each adapter's probe under that adapter alone, as a single run does (the base's
    # logits, the same for every adapter, computed once)
    base_logits: BaseLogits = {}
    for member in active:
        prepared = member.prepared
        assert prepared is not None
        try:
            with pool.acquire(prepared.model_dir, adapter_dir=prepared.adapter_dir) as loaded:
                probe_adapter(prepared, loaded, ctx, base_logits)
        except Exception as exc:
            member.fail(exc)
    active = [m for m in active if m.open]
    if active:
        first = active[0].prepared
        assert first is not None
        adapters = [m.prepared.adapter_dir for m in active if m.prepared and m.prepared.adapter_dir]
        with pool.acquire_mixed(first.model_dir, adapters) as (loaded, names):
            named = iter(names)
            for member in active:
                if member.prepared is not None and member.prepared.adapter_dir is not None:
                    member.adapter_name = next(named)
            # a PEFT-wrapped base runs its active adapter on unnamed rows: name every row
            _generate_mixed(active, ctx, loaded, mixed=hasattr(loaded.model, "peft_config"))
    for member in active:
        prepared = member.prepared
        if not member.open or prepared is None:
            continue
        try:
            with pool.acquire(prepared.model_dir, adapter_dir=prepared.adapter_dir) as loaded:
                by_likelihood_and_perplexity(prepared, loaded, ctx, member.heartbeat)
        except Exception as exc:
            member.fail(exc)
    for member in members:
        if member.open and member.prepared is not None:
            try:
                member.status = finish_scores(member.prepared, ctx, member.generated)
            except Exception as exc:
                member.fail(exc)


def _generate_mixed(
    members: list[_Member], ctx: WorkerContext, loaded: LoadedModel, *, mixed: bool
) -> None:
    """Generate every member's missing rows in shared batches; write each member's chunk."""
    first = members[0].prepared
    assert first is not None
    config = first.generation_config
    rows: list[tuple[_Member, Any]] = []
    for member in members:
        prepared = member.prepared
        assert prepared is not None
        with unit_of_work(ctx.factory, write=False) as session:
            done = done_keys(session, member.evaluation_id)
        rows += [
            (member, e)
            for e in prepared.spec.examples
            if e.id not in done and not is_loglikelihood_record(e)
        ]
    if not rows:
        return
    prompts = [e.messages if e.messages is not None else e.input for _, e in rows]
    encoded = encode_prompts(
        loaded.tokenizer,
        prompts,
        chat_template=config["chat_template"],
        system=config.get("system"),
    )
    choice = ctx.batch_sizer().for_generation(loaded, encoded, config["max_new_tokens"])
    batch = min(choice.batch_size, len(rows))
    order = sorted(range(len(rows)), key=lambda i: (len(encoded[i]), i))
    chunk_size = batch * -(-ctx.settings.chunk_size // batch)
    for start in range(0, len(order), chunk_size):
        for member in members:
            if member.open:
                try:
                    check_continue(ctx, member.evaluation_id, member.heartbeat)
                except EvaluationCancelled as exc:
                    member.fail(exc)
        chunk = [rows[i] for i in order[start : start + chunk_size] if rows[i][0].open]
        if not chunk:
            continue
        outputs = generate(
            loaded,
            [e.messages if e.messages is not None else e.input for _, e in chunk],
            max_new_tokens=config["max_new_tokens"],
            chat_template=config["chat_template"],
            system=config.get("system"),
            batch_size=batch,
            seed=config["seed"],
            adapter_names=[m.adapter_name for m, _ in chunk] if mixed else None,
        )
        ctx.forward_passes += len(chunk)
        for member in members:
            mine = [(e, o) for (m, e), o in zip(chunk, outputs, strict=True) if m is member]
            if mine and member.open:
                _write(member, mine, ctx)


def _write(member: _Member, pairs: list[tuple[Any, Any]], ctx: WorkerContext) -> None:
    prepared = member.prepared
    assert prepared is not None
    try:
        examples = [e for e, _ in pairs]
        scores = prepared.scorers.score(examples, [o.text for _, o in pairs])
        chunk_rows = [
            storage.ChunkRow(e.id, o.text, o.n_prompt_tokens, o.n_new_tokens, s)
            for (e, o), s in zip(pairs, scores, strict=True)
        ]
        with unit_of_work(ctx.factory) as session:
            n_done = storage.write_chunk(session, member.evaluation_id, chunk_rows)
    except Exception as exc:
        member.fail(exc)
        return
    member.generated.update(e.id for e, _ in pairs)
    if ctx.after_chunk is not None:
        ctx.after_chunk(member.evaluation_id, n_done)
