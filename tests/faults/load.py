"""Bursts of concurrent requests against a live server, with the client a CI fleet would run.

The client retries only what the server says to retry: 503 with ``Retry-After``
(the same Idempotency-Key, so a retry can never store twice). Everything else is
an answer. The figures (latency of the answered request, retries) are returned so
the test asserts on them and the benchmark prints them.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np


@dataclass
class Answer:
    status: int
    body: Any
    seconds: float  # from the first attempt to the final answer
    attempts: int
    retry_after_missing: bool = False


@dataclass
class Burst:
    answers: list[Answer] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers:
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts

    @property
    def retried(self) -> int:
        return sum(answer.attempts > 1 for answer in self.answers)

    def percentile(self, q: float) -> float:
        return float(np.percentile([a.seconds for a in self.answers], q))

    def summary(self, label: str) -> str:
        return (
            f"{label}: {len(self.answers)} requests in {self.wall_seconds:.1f} s, "
            f"statuses {dict(sorted(self.statuses.items()))}, {self.retried} retried after 503, "
            f"p50 {self.percentile(50) * 1000:.0f} ms, p99 {self.percentile(99) * 1000:.0f} ms"
        )


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_attempts: int = 30,
    **kwargs: Any,
) -> Answer:
    """One logical request: retried on 503 after its Retry-After (plus jitter)."""
    start = time.perf_counter()
    missing = False
    for attempt in range(1, max_attempts + 1):
        response = await client.request(method, url, **kwargs)
        if response.status_code != 503 or attempt == max_attempts:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            return Answer(response.status_code, body, time.perf_counter() - start, attempt, missing)
        retry_after = response.headers.get("Retry-After")
        missing = missing or retry_after is None
        await asyncio.sleep(float(retry_after or 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def client(base_url: str, headers: dict[str, str], timeout: float = 120.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, limits=limits)


async def _gather(coroutines: list[Any]) -> Burst:
    start = time.perf_counter()
    answers = await asyncio.gather(*coroutines)
    return Burst(list(answers), time.perf_counter() - start)


async def submit_burst(
    base_url: str, headers: dict[str, str], checkpoint: str, *, keys: int, copies: int = 2
) -> tuple[Burst, dict[str, list[Answer]]]:
    """``keys`` x ``copies`` concurrent ``POST /v1/candidates``, each key sent ``copies`` times."""
    async with client(base_url, headers) as http:
        order = [(k, c) for k in range(keys) for c in range(copies)]
        random.Random(0).shuffle(order)
        calls = [
            call(
                http,
                "POST",
                "/v1/candidates",
                json={
                    "family": "load",
                    "checkpoint": checkpoint,
                    "learning_rate": 1e-4 * (1 + k),
                    "sweep": "burst",
                    "name": f"key-{k}",
                },
                headers={"Idempotency-Key": f"burst-key-{k}"},
            )
            for k, _ in order
        ]
        burst = await _gather(calls)
    by_key: dict[str, list[Answer]] = {}
    for (k, _), answer in zip(order, burst.answers, strict=True):
        by_key.setdefault(f"burst-key-{k}", []).append(answer)
    return burst, by_key


async def read_burst(base_url: str, headers: dict[str, str], *, n: int) -> Burst:
    """``n`` concurrent reads over three list routes."""
    paths = ["/v1/families", "/v1/candidates?limit=50", "/v1/datasets"]
    async with client(base_url, headers) as http:
        return await _gather([call(http, "GET", paths[i % len(paths)]) for i in range(n)])


def setup_family(base_url: str, headers: dict[str, str]) -> None:
    response = httpx.post(
        f"{base_url}/v1/families",
        json={"name": "load", "base_model": "smollm2-135m-instruct"},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 201, response.text
