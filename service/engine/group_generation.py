"""Generating the missing rows of a group's evaluations in shared batches (one or several).

The rows every member still has to generate are planned into batches (:func:`plan_batches`):
each member's rows, shortest prompts first, cut into full batches of that member alone (run
with its adapter set, or the adapter disabled for the base: the plain forward, no per-row
indexing), and what is left of every member pooled into mixed batches (PEFT's
``adapter_names=`` per row, ``"__base__"`` for the base) so that no batch runs half empty.

Chunks of whole batches are generated on the calling thread; each chunk is scored and
committed, one unit of work per member, on one background thread (:class:`ChunkWriter`)
while the next chunk generates, in order, at most one behind. A chunk is committed whole or
not at all, so a crash loses at most the chunks not yet committed, and the next run resumes
from the stored rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from service.db.session import unit_of_work
from service.engine import lease, storage
from service.engine.context import WorkerContext, check_continue
from service.engine.generation import (
    BASE_ROW,
    GenerationOutput,
    encode_prompts,
    generate,
    prompt_of,
)
from service.engine.loading import LoadedModel
from service.engine.loglikelihood import is_loglikelihood_record
from service.engine.phases import Prepared, outcome
from service.errors import EvaluationCancelled
from service.lifecycle import EvaluationStatus
from service.queries.results import done_keys

log = logging.getLogger("tunegate.job")


@dataclass
class Member:
    """One evaluation of a running group: its lease, what :func:`prepare` found, its rows."""

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


def plan_batches(owners: Sequence[Hashable], lengths: Sequence[int], batch: int) -> list[list[int]]:
    """Row indices in batches of at most ``batch``: each owner's rows sorted by length (then
    index) and cut into full batches of that owner alone, taken round-robin over the owners
    (in order of first appearance) so that all of them progress together; then the rows
    left over, pooled across owners, sorted by length and cut into mixed batches."""
    if batch < 1:
        raise ValueError("batch must be positive")
    by_owner: dict[Hashable, list[int]] = {}
    for index, owner in enumerate(owners):
        by_owner.setdefault(owner, []).append(index)
    full: list[list[list[int]]] = []
    rest: list[int] = []
    for rows in by_owner.values():
        rows.sort(key=lambda i: (lengths[i], i))
        n_full = len(rows) // batch * batch
        full.append([rows[s : s + batch] for s in range(0, n_full, batch)])
        rest += rows[n_full:]
    out = [own[k] for k in range(max(map(len, full), default=0)) for own in full if k < len(own)]
    rest.sort(key=lambda i: (lengths[i], i))
    return out + [rest[s : s + batch] for s in range(0, len(rest), batch)]


class ChunkWriter:
    """Runs each chunk's write on one background thread while the caller generates the next:
    writes run in order, at most one at a time; :meth:`submit` first waits for the one before
    and raises what it raised. Leaving the block waits for the last write (its error raised
    unless the block is already raising; then it is logged)."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunegate-writer")
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        self._pending = self._executor.submit(write)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.wait()
            else:
                try:
                    self.wait()
                except Exception:
                    log.exception("a chunk write failed while the job was already failing")
        finally:
            self._executor.shutdown(wait=True)


def generate_rows(members: Sequence[Member], ctx: WorkerContext, loaded: LoadedModel) -> None:
    """Generate every open member's missing rows in planned batches, writing each member's
    share of a chunk as one unit of work; a member whose write fails (or that is cancelled)
    leaves the group at the next chunk, the others go on."""
    first = members[0].prepared
    assert first is not None
    config = first.generation_config
    # a PEFT-wrapped base runs its active adapter on unnamed rows: name every row
    named = hasattr(loaded.model, "peft_config")
    rows: list[tuple[Member, Any]] = []
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
    encoded = encode_prompts(
        loaded.tokenizer,
        [prompt_of(e) for _, e in rows],
        chat_template=config["chat_template"],
        system=config.get("system"),
    )
    choice = ctx.batch_sizer().for_generation(loaded, encoded, config["max_new_tokens"])
    batch = min(choice.batch_size, len(rows))
    plan = plan_batches([m.evaluation_id for m, _ in rows], [len(ids) for ids in encoded], batch)
    per_chunk = max(1, -(-ctx.settings.chunk_size // batch))
    with ChunkWriter() as writer:
        for start in range(0, len(plan), per_chunk):
            for member in members:
                if member.open:
                    try:
                        check_continue(ctx, member.evaluation_id, member.heartbeat)
                    except EvaluationCancelled as exc:
                        member.fail(exc)
            chunk: list[tuple[Member, Any]] = []
            generated: list[GenerationOutput] = []
            for planned in plan[start : start + per_chunk]:
                todo = [rows[i] for i in planned if rows[i][0].open]
                if not todo:
                    continue
                outputs = generate(
                    loaded,
                    [prompt_of(e) for _, e in todo],
                    max_new_tokens=config["max_new_tokens"],
                    chat_template=config["chat_template"],
                    system=config.get("system"),
                    batch_size=len(todo),
                    seed=config["seed"],
                    adapter_names=[m.adapter_name for m, _ in todo] if named else None,
                )
                ctx.forward_passes += len(todo)
                chunk += todo
                generated += outputs
            if chunk:
                writer.submit(_writes(members, chunk, generated, ctx))


def _writes(
    members: Sequence[Member],
    chunk: list[tuple[Member, Any]],
    outputs: list[GenerationOutput],
    ctx: WorkerContext,
) -> Callable[[], None]:
    def write() -> None:
        for member in members:
            mine = [(e, o) for (m, e), o in zip(chunk, outputs, strict=True) if m is member]
            if mine and member.open:
                _write(member, mine, ctx)

    return write


def _write(member: Member, pairs: list[tuple[Any, GenerationOutput]], ctx: WorkerContext) -> None:
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
