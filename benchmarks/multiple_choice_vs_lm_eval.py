"""Multiple choice by log-likelihood: tunegate's scorer vs lm-eval 0.4.13, same items and model.

Runs lm-eval end to end (a local ``multiple_choice`` task, ``doc_to_text: "{{input}}"``,
through ``simple_evaluate``) and tunegate's ``score_records`` (shared prompt, then plain) on
the same items and the same local model folder, and prints the per-choice log-likelihood
difference, the acc / acc_norm disagreements and each side's wall time (model loading
excluded; lm-eval's time includes its task set-up, which is part of running it)::

    PYTHONPATH=. python benchmarks/multiple_choice_vs_lm_eval.py              # SmolLM2, 200 items
    PYTHONPATH=. python benchmarks/multiple_choice_vs_lm_eval.py --model tiny --items 60

The items are the demo's 60 general-knowledge questions (``service/demo/data/
general_knowledge.jsonl``) asked as ``Question: ...\\nAnswer:``, repeated with their choices
rotated until ``--items`` are reached (a rotation is a new item: other order, other answer
index). Needs ``pip install -e '.[reference]'``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def items(n: int) -> list[dict[str, Any]]:
    """``n`` multiple-choice items: the 60 questions, then again with rotated choices."""
    text = resources.files("service.demo").joinpath("data", "general_knowledge.jsonl")
    rows = [json.loads(line) for line in text.read_text().splitlines()]
    questions = [row for row in rows if "choices" in row]
    found: list[dict[str, Any]] = []
    shift = 0
    while len(found) < n:
        for row in questions[: n - len(found)]:
            k = len(row["choices"])
            choices = [row["choices"][(i + shift) % k] for i in range(k)]
            answer = (row["answer"] - shift) % k
            found.append(
                {
                    "input": f"Question: {row['input']}\nAnswer:",
                    "choices": choices,
                    "answer": answer,
                }
            )
        shift += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    args = parser.parse_args()

    import torch

    from evaluators.base import Example
    from service.engine.loading import ModelPool
    from service.engine.loglikelihood import loglikelihoods, record_requests, score_records
    from tests.lm_eval_reference import run_lm_eval, write_task
    from tests.models import smollm2_dir, tiny_llama_dir

    torch.set_num_threads(args.threads)
    folder = smollm2_dir() if args.model == "smollm2" else tiny_llama_dir()
    data = items(args.items)
    examples = [
        Example(id=str(i), input=d["input"], choices=d["choices"], answer=d["answer"])
        for i, d in enumerate(data)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        reference = run_lm_eval(write_task(Path(tmp), data), folder, batch_size=args.batch_size)
        theirs_s = time.perf_counter() - start

    with ModelPool(max_bases=1).acquire(folder) as loaded:
        timings: dict[str, float] = {}
        for share in (False, True):
            start = time.perf_counter()
            records = score_records(
                loaded,
                examples,
                chat_template=False,
                batch_size=args.batch_size,
                share_prompt=share,
            )
            timings["shared prompt" if share else "plain"] = time.perf_counter() - start
        requests = [
            r for e in examples for r in record_requests(loaded.tokenizer, e, chat_template=False)
        ]
        ours = loglikelihoods(loaded.model, requests, batch_size=args.batch_size)

    theirs_lls = [value for item in reference for value in item.loglikelihoods]
    diffs = [abs(a.logprob - b) for a, b in zip(ours, theirs_lls, strict=True)]
    acc_mismatch = sum(
        r.scores["choice_acc"] != t.acc for r, t in zip(records, reference, strict=True)
    )
    norm_mismatch = sum(
        r.scores["choice_acc_norm"] != t.acc_norm for r, t in zip(records, reference, strict=True)
    )
    n_choices = len(requests)
    print(f"model            {folder} ({args.threads} threads, batch {args.batch_size})")
    print(f"items            {len(examples)} ({n_choices} choices)")
    print(
        f"lm-eval 0.4.13   {theirs_s:7.2f} s"
        " (simple_evaluate incl. task set-up; model load excluded)"
    )
    for name, seconds in timings.items():
        print(f"tunegate {name:<14} {seconds:7.2f} s")
    print(f"max |loglik diff| {max(diffs):.2e} nats (mean {sum(diffs) / len(diffs):.2e})")
    print(f"acc mismatches   {acc_mismatch}/{len(examples)}; acc_norm mismatches {norm_mismatch}")
    acc = sum(r.scores["choice_acc"] for r in records) / len(records)
    acc_norm = sum(r.scores["choice_acc_norm"] for r in records) / len(records)
    print(
        f"acc={acc:.3f} acc_norm={acc_norm:.3f} (lm-eval: "
        f"{sum(t.acc for t in reference) / len(reference):.3f} / "
        f"{sum(t.acc_norm for t in reference) / len(reference):.3f})"
    )


if __name__ == "__main__":
    main()
