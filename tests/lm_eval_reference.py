"""Run lm-eval 0.4.13 end to end on a local multiple-choice task (no download).

The task is a YAML file written next to a JSONL copy of the items, loaded through lm-eval's
``TaskManager(include_path=...)`` and run by ``simple_evaluate`` with ``log_samples``, so the
whole of lm-eval's pipeline (templating, request building, batching, metrics) is exercised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK = "tunegate_local_mc"


@dataclass(frozen=True)
class ReferenceItem:
    """lm-eval's verdict on one item: per-choice log-likelihoods, acc, acc_norm."""

    loglikelihoods: list[float]
    acc: float
    acc_norm: float


def write_task(folder: Path, items: Sequence[dict[str, Any]]) -> Path:
    """A local lm-eval task over ``items`` (``input``, ``choices``, ``answer``)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps(dict(item)) + "\n" for item in items), encoding="utf-8")
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{input}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n",
        encoding="utf-8",
    )
    return folder


def run_lm_eval(
    task_dir: Path, model_dir: Path, adapter_dir: Path | None = None, batch_size: int = 8
) -> list[ReferenceItem]:
    """lm-eval's per-item results, in item order."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model = HFLM(
        pretrained=str(model_dir),
        peft=str(adapter_dir) if adapter_dir else None,
        device="cpu",
        batch_size=batch_size,
    )
    results = lm_eval.simple_evaluate(
        model=model,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
    )
    assert results is not None
    samples = sorted(results["samples"][TASK], key=lambda sample: sample["doc_id"])
    return [
        ReferenceItem(
            [float(resp[0]) for resp in sample["filtered_resps"]],
            float(sample["acc"]),
            float(sample["acc_norm"]),
        )
        for sample in samples
    ]
