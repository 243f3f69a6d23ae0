"""A group's rows: planned batches (single-adapter where full, mixed for the rest), a batch of
one adapter run as the plain forward with the same answers, writes in order off the thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.engine.generation import BASE_ROW, generate
from service.engine.group_generation import ChunkWriter, plan_batches
from service.engine.loading import ModelPool
from tests.engine.test_generation import PROMPTS


def test_full_batches_hold_one_owner_and_the_rest_is_pooled_by_length() -> None:
    owners = ["base"] * 5 + ["a"] * 5 + ["b"] * 2
    lengths = [5, 1, 4, 2, 3, 9, 8, 7, 6, 0, 3, 1]
    plan = plan_batches(owners, lengths, 2)
    assert sorted(i for batch in plan for i in batch) == list(range(12))  # each row once
    assert all(1 <= len(batch) <= 2 for batch in plan)
    # full batches of one owner each, shortest first, the owners in turn; then what is left
    # of each owner (one row of base, one of a) pooled into one mixed batch, by length
    assert plan == [[1, 3], [9, 8], [11, 10], [4, 2], [7, 6], [0, 5]]
    assert plan_batches(["x"] * 3, [3, 2, 1], 8) == [[2, 1, 0]]
    with pytest.raises(ValueError, match="positive"):
        plan_batches(["x"], [1], 0)


def test_leftovers_share_a_mixed_batch() -> None:
    owners = ["base", "a", "b", "c", "base", "a", "b", "c"]
    plan = plan_batches(owners, [1, 1, 1, 1, 2, 2, 2, 2], 4)
    assert plan == [[0, 1, 2, 3], [4, 5, 6, 7]]  # four owners of two rows: mixed, by length


def test_a_batch_of_one_adapter_answers_as_the_same_rows_in_a_mixed_batch(
    context_model_dir: Path, adapter_a: Path, adapter_b: Path
) -> None:
    pool = ModelPool(device="cpu")
    with pool.acquire_mixed(context_model_dir, [adapter_a, adapter_b]) as (loaded, names):
        a, b = names
        mixed_names = [(a, b, BASE_ROW)[i % 3] for i in range(len(PROMPTS))]
        answers = {}
        mixed = generate(
            loaded, PROMPTS, max_new_tokens=10, batch_size=8, adapter_names=mixed_names
        )
        for name in (a, b, BASE_ROW):
            alone = generate(
                loaded, PROMPTS, max_new_tokens=10, batch_size=8, adapter_names=[name] * 7
            )
            rows = [i for i, n in enumerate(mixed_names) if n == name]
            assert [alone[i] for i in rows] == [mixed[i] for i in rows]
            answers[name] = alone
    assert answers[a] != answers[BASE_ROW]  # the adapters had teeth
    assert answers[b] != answers[a]
    with pool.acquire(context_model_dir) as plain:
        assert generate(plain, PROMPTS, max_new_tokens=10, batch_size=8) == answers[BASE_ROW]


def test_writes_run_in_order_off_the_calling_thread_and_errors_surface() -> None:
    done: list[int] = []
    threads: set[str] = set()

    def write(k: int) -> None:
        time.sleep(0.01 * (3 - k))  # a later write would finish first if they overlapped
        threads.add(threading.current_thread().name)
        done.append(k)

    with ChunkWriter() as writer:
        for k in range(3):
            writer.submit(lambda k=k: write(k))  # type: ignore[misc]
    assert done == [0, 1, 2]
    assert threading.current_thread().name not in threads

    def fail() -> None:
        raise RuntimeError("disk full")

    with ChunkWriter() as writer:
        writer.submit(fail)
        with pytest.raises(RuntimeError, match="disk full"):  # waits for the one before
            writer.submit(lambda: done.append(9))
    assert done[-1] == 2  # the write after the failed one did not run
    writer = ChunkWriter()
    writer.submit(fail)
    with pytest.raises(RuntimeError, match="disk full"):  # the last one raises at the end
        writer.__exit__(None, None, None)
