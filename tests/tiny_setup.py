"""The small question set and dataset the tiny-model API tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.settings import Settings

QUESTIONS = [
    ("What is the capital of France?", "Paris.", "in"),
    ("What is the capital of Italy?", "Rome.", "in"),
    ("What is the capital of Japan?", "Tokyo.", "in"),
    ("What is the capital of Spain?", "Madrid.", "in"),
    ("What colour is the sky on a clear day?", "Blue.", "out"),
    ("How many legs does a spider have?", "Eight.", "out"),
    ("What do bees make?", "Honey.", "out"),
    ("What is two plus two?", "Four.", "out"),
]


def dataset_jsonl(max_new_tokens: int = 6, n_repeat: int = 1) -> str:
    """The questions (``n_repeat`` times, reworded), a JSON task and held-out text.

    Example ids are ``q0``..``q7`` for the first round, ``q1-0``.. for repeats.
    """
    lines: list[dict[str, Any]] = [
        {"generation": {"max_new_tokens": max_new_tokens, "chat_template": True}}
    ]
    for r in range(n_repeat):
        for i, (q, a, domain) in enumerate(QUESTIONS):
            lines.append(
                {
                    "id": f"q{i}" if r == 0 else f"q{r}-{i}",
                    "input": q if r == 0 else f"{q} (take {r})",
                    "reference": a,
                    "context": f"Fact: {a}",
                    "domain": domain,
                    "cohort": "capitals" if domain == "in" else "general",
                }
            )
    lines.append(
        {
            "id": "json-1",
            "input": 'Reply with JSON {"ok": true}.',
            "json_schema": {"type": "object", "required": ["ok"]},
            "cohort": "json",
        }
    )
    lines.append({"heldout": "The quick brown fox jumps over the lazy dog. " * 4})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def model_settings(
    tmp_path: Path, db_url: str, *, checkpoint_roots: list[Path], model_roots: list[Path], **kw: Any
) -> Settings:
    """Settings for tests that run real models: the given roots, no queue (tests run the
    worker themselves), ``kw`` for chunk and batch sizes."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        checkpoint_roots=checkpoint_roots,
        model_roots=model_roots,
        queue="none",
        **kw,
    )
