"""The evaluation job: what the in-process and the Celery workers both call.

:func:`run_evaluation` runs (or resumes) one evaluation; :func:`run_group` runs several of one
base model, dataset version and generation config together — a sweep in one pass: the base
is loaded once, every adapter is loaded on it, and batches serve rows of several evaluations
(:mod:`service.engine.group_generation`). One evaluation is a group of one.

Everything else stays per evaluation, exactly as if it had run alone
(:mod:`service.engine.phases`): its own lease and heartbeat, checkpoint checks, outputs key
and reuse, adapter-applied probe, provenance, chunked writes with progress, log-likelihood
records and perplexity (under its own adapter), aggregates, terminal status and due
decisions, set in a ``finally``. A cancelled or failing evaluation leaves the group at the
next chunk; a crash leaves each evaluation with the rows of the chunks committed so far, and
its next run (alone or in a group) resumes from them: the (evaluation, example) key is unique
and done examples are skipped.

**Late arrivals join before generation.** Candidates of a sweep are submitted together but
arrive over a second or two. With ``gather_seconds`` the group, once its members are prepared
and probed (the base loaded, the batch measured), admits evaluations that may share its
batches (:func:`~service.engine.sweep_groups.joiners`) until the newest member was queued
``gather_seconds`` ago, then generates: the wait for the rest of a sweep overlaps the work
that comes first anyway, instead of adding to it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack

from service.db.base import utcnow
from service.engine import lease
from service.engine.context import WorkerContext
from service.engine.generation import encode_prompts, prompt_of
from service.engine.group_generation import Member, generate_rows
from service.engine.loglikelihood import is_loglikelihood_record
from service.engine.phases import (
    Prepared,
    by_likelihood_and_perplexity,
    close,
    finish_scores,
    prepare,
    probe_adapter,
)
from service.engine.probe import BaseLogits
from service.engine.sweep_groups import SHARING_KINDS, joiners, newest_arrival
from service.lifecycle import FAILED


def run_evaluation(evaluation_id: int, ctx: WorkerContext) -> str | None:
    """Run (or resume) one evaluation; returns its final status, or None if not claimed."""
    return run_group([evaluation_id], ctx)[evaluation_id]


def run_group(
    evaluation_ids: Sequence[int],
    ctx: WorkerContext,
    *,
    gather_seconds: float = 0.0,
    stop: threading.Event | None = None,
) -> dict[int, str | None]:
    """Run (or resume) evaluations together; each one's final status, or None if not claimed.

    ``gather_seconds`` > 0 lets evaluations that arrive meanwhile join before generation
    (see the module docstring); they are in the result too. ``stop`` cuts that wait short.
    """
    members: list[Member] = []
    results: dict[int, str | None] = dict.fromkeys(evaluation_ids)
    with ExitStack() as stack:
        for evaluation_id in evaluation_ids:
            member = _claim(evaluation_id, ctx, stack)
            if member is not None:
                members.append(member)
        try:
            _run_members(members, ctx, stack, gather_seconds, stop)
        except Exception as exc:  # a failure of the shared part: every member still open
            for member in members:
                if member.open:
                    member.fail(exc)
        finally:
            for member in members:
                status = member.status or FAILED
                error = member.error if member.status else "the job stopped before it finished"
                held = close(ctx, member.evaluation_id, status, error)
                results[member.evaluation_id] = status if held else None
    return results


def _claim(evaluation_id: int, ctx: WorkerContext, stack: ExitStack) -> Member | None:
    """Take the evaluation's lease and start its heartbeat (for as long as ``stack``)."""
    settings = ctx.settings
    if not lease.claim(ctx.factory, evaluation_id, ctx.worker_id, settings.lease_seconds):
        return None
    heartbeat = lease.Heartbeat(
        ctx.factory,
        evaluation_id,
        ctx.worker_id,
        lease_seconds=settings.lease_seconds,
        interval=settings.heartbeat_seconds,
    )
    stack.enter_context(heartbeat)
    return Member(evaluation_id, heartbeat)


def _prepare_and_probe(members: Sequence[Member], ctx: WorkerContext, base: BaseLogits) -> None:
    """Each member prepared and, when it needs the model, its adapter probed under that
    adapter alone, as a single run does (``base``: the base's logits, computed once)."""
    pool = ctx.model_pool()
    for member in members:
        try:
            member.prepared = prepared = prepare(member.evaluation_id, ctx)
            if prepared.needs_model and prepared.adapter_dir is not None:
                with pool.acquire(prepared.model_dir, adapter_dir=prepared.adapter_dir) as loaded:
                    probe_adapter(prepared, loaded, ctx, base)
        except Exception as exc:
            member.fail(exc)


def _generating(members: Sequence[Member]) -> list[Member]:
    return [m for m in members if m.open and m.prepared is not None and m.prepared.needs_model]


def _run_members(
    members: list[Member],
    ctx: WorkerContext,
    stack: ExitStack,
    gather_seconds: float,
    stop: threading.Event | None,
) -> None:
    base_logits: BaseLogits = {}
    _prepare_and_probe(members, ctx, base_logits)
    if gather_seconds > 0 and _generating(members):
        _admit_late_arrivals(members, ctx, stack, gather_seconds, stop, base_logits)
    active = _generating(members)
    pool = ctx.model_pool()
    if active:
        first = active[0].prepared
        assert first is not None
        adapters = [m.prepared.adapter_dir for m in active if m.prepared and m.prepared.adapter_dir]
        with pool.acquire_mixed(first.model_dir, adapters) as (loaded, names):
            named = iter(names)
            for member in active:
                if member.prepared is not None and member.prepared.adapter_dir is not None:
                    member.adapter_name = next(named)
            generate_rows(active, ctx, loaded)
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


def _admit_late_arrivals(
    members: list[Member],
    ctx: WorkerContext,
    stack: ExitStack,
    gather_seconds: float,
    stop: threading.Event | None,
    base_logits: BaseLogits,
) -> None:
    """Claim, prepare and probe evaluations that may join the group, until the newest member
    was queued ``gather_seconds`` ago (or the group is full); meanwhile measure the batch."""
    first = _generating(members)[0].prepared
    assert first is not None
    if first.spec.candidate_kind not in SHARING_KINDS:
        return  # a full fine-tune shares batches with nothing
    size = ctx.settings.sweep_size
    measured = False
    for _ in range(4 * size + 4):  # each pass admits someone or waits once: bounded anyway
        ids = [m.evaluation_id for m in members]
        arrived = [m for i in joiners(ctx.factory, ids, size) if (m := _claim(i, ctx, stack))]
        if arrived:
            _prepare_and_probe(arrived, ctx, base_logits)
            members += arrived
            continue
        quiet = (utcnow() - newest_arrival(ctx.factory, ids)).total_seconds()
        delay = gather_seconds - quiet
        if delay <= 0 or len(members) >= size:
            return
        if not measured:  # the batch probe, cached for the generation that follows
            measured = True
            _measure_batch(first, ctx)
            continue
        if (stop or threading.Event()).wait(delay):
            return


def _measure_batch(prepared: Prepared, ctx: WorkerContext) -> None:
    """Run the auto batch probe now (it is cached per model) on the group's real prompts."""
    config = prepared.generation_config
    prompts = [prompt_of(e) for e in prepared.spec.examples if not is_loglikelihood_record(e)]
    if not prompts:
        return
    with ctx.model_pool().acquire(prepared.model_dir) as loaded:
        encoded = encode_prompts(
            loaded.tokenizer,
            prompts,
            chat_template=config["chat_template"],
            system=config.get("system"),
        )
        ctx.batch_sizer().for_generation(loaded, encoded, config["max_new_tokens"])
