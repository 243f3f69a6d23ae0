"""The demo's data and plan: a ticket-triage fine-tune of SmolLM2-135M-Instruct, gated.

The task (``data/train.jsonl``, ``data/eval.jsonl``, written for this project): support
tickets of a fictional store, "Nimbus", are to be answered with the queue they belong to,
in a fixed format — ``Queue: billing`` (billing, shipping, account, technical, returns).
The base model does not know the store, its queue names or the format, so its in-domain
token F1 starts near zero; a LoRA learns the format and the keywords in tens of steps.
Eval tickets are fresh fills of the training templates plus templates never trained on.

What must not be forgotten (``domain: out``): 60 general questions SmolLM2-135M answers
(capitals, simple science), each with a reference answer, and a few JSON-output prompts
with a schema (cohort ``json``); 60 general-knowledge multiple-choice items and 40 gold
continuations (``data/general_knowledge.jsonl``), scored by log-likelihood without
generation; and tunegate's safety probe set (``service/data/safety_probes.jsonl``: 40
prompts to refuse, 40 benign ones to answer). Held-out paragraphs measure perplexity drift.
The demo family's gate policy is ``data/policy.yaml``.

Nothing here decides how the sweep comes out: the rates are trained, submitted and judged,
and the demo prints what the gate measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
SAFETY_DIR = Path(__file__).parent.parent / "data"
DATASET_NAME = "nimbus-triage"
FAMILY_NAME = "nimbus-support"
SWEEP_NAME = "demo-sweep"


@dataclass(frozen=True)
class DemoPlan:
    """How big a demo run is."""

    rates: tuple[float, ...]
    steps: int
    batch_size: int
    in_domain: int | None
    """Eval tickets kept (``None``: all)."""
    out_domain: int | None
    json_examples: int | None
    heldout: int | None
    choice_items: int | None
    """Multiple-choice items kept (``None``: all 60)."""
    gold_items: int | None
    """Gold continuations kept (``None``: all 40)."""
    safety_probes: int | None
    """Safety probes kept per expectation, refuse and comply (``None``: all 40 + 40)."""
    max_new_tokens: int
    warmup_steps: int
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """LoRA on every linear layer: the backward pass runs through every layer anyway (to
    reach the first adapted one), so adapting all of them learns faster per step at almost
    no extra cost."""


# Sized for a 2-core CPU: a SmolLM2 LoRA step on 2 examples takes ~1.5-2 s there, so the
# four fine-tunes are the bulk of the run; evaluations run in the server meanwhile.
FULL = DemoPlan(
    rates=(5e-5, 1e-4, 5e-4, 1e-3),
    steps=30,
    batch_size=2,
    in_domain=None,
    out_domain=None,
    json_examples=None,
    heldout=None,
    choice_items=None,
    gold_items=None,
    safety_probes=None,
    max_new_tokens=20,
    warmup_steps=4,
)
QUICK = DemoPlan(
    rates=(1e-4, 1e-3),
    steps=16,
    batch_size=2,
    in_domain=16,
    out_domain=14,
    json_examples=2,
    heldout=4,
    choice_items=16,
    gold_items=8,
    safety_probes=6,
    max_new_tokens=16,
    warmup_steps=2,
)


def _records(name: str, folder: Path = DATA_DIR) -> list[dict[str, Any]]:
    text = (folder / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _take(items: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    return items if n is None else items[:n]


def eval_dataset(plan: DemoPlan) -> bytes:
    """The eval dataset push (JSONL) for ``plan``: the packaged file, cut to the plan's size."""
    records = _records("eval.jsonl")
    examples = [r for r in records if "input" in r]
    tickets = [r for r in examples if r.get("domain", "in") == "in"]
    general = [r for r in examples if r.get("domain") == "out" and r.get("cohort") != "json"]
    json_out = [r for r in examples if r.get("cohort") == "json"]
    heldout = [r for r in records if "heldout" in r]
    lines = [{"generation": {"max_new_tokens": plan.max_new_tokens, "chat_template": True}}]
    lines += _take(tickets, plan.in_domain) + _take(general, plan.out_domain)
    lines += _take(json_out, plan.json_examples)
    knowledge = _records("general_knowledge.jsonl")
    lines += _take([r for r in knowledge if "choices" in r], plan.choice_items)
    lines += _take([r for r in knowledge if "target" in r], plan.gold_items)
    probes = _records("safety_probes.jsonl", SAFETY_DIR)
    for expect in ("refuse", "comply"):
        lines += _take([r for r in probes if r["expect"] == expect], plan.safety_probes)
    lines += _take(heldout, plan.heldout)
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n").encode("utf-8")


def training_pairs() -> list[tuple[str, str]]:
    """(ticket prompt, ``Queue: <name>``) pairs the LoRA is trained on."""
    return [(r["prompt"], r["answer"]) for r in _records("train.jsonl")]


def policy_text() -> str:
    """The demo family's gate policy (YAML)."""
    return (DATA_DIR / "policy.yaml").read_text(encoding="utf-8")
