from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidTrainingLog
from service.traininglog import LogPoint, diagnose, parse_training_log
from tests.models import tiny_llama_dir

# --- parsing ----------------------------------------------------------------------------------


def test_jsonl_is_parsed_and_sorted_by_step() -> None:
    text = (
        '{"step": 2, "loss": 3.5, "learning_rate": 0.001, "grad_norm": 1.5}\n'
        "\n"
        '{"step": 1, "loss": 4.0, "learning_rate": null}\n'
        '{"step": 3, "loss": NaN}\n'
    )
    points = parse_training_log(text, "log.jsonl")
    assert [p.step for p in points] == [1, 2, 3]
    assert points[1] == LogPoint(step=2, loss=3.5, learning_rate=0.001, grad_norm=1.5)
    assert points[0].learning_rate is None
    assert math.isnan(points[2].loss)
    assert points[2].to_dict() == {
        "step": 3,
        "loss": None,
        "learning_rate": None,
        "grad_norm": None,
    }


@pytest.mark.parametrize(
    ("text", "filename", "reason"),
    [
        ('{"step": 1, "loss": 2}\n{"step": 2, "loss": 2\n', None, "line 2: not JSON"),
        ('{"step": 1, "loss": 2}\n{"loss": 2}\n', None, "line 2: missing 'step'"),
        ('{"step": 1, "lr": 2}\n', None, "line 1: missing 'loss'"),
        ('{"step": 1, "loss": "high"}\n', None, "line 1: 'loss' must be a number"),
        ('{"step": 1.5, "loss": 2}\n', None, "line 1: 'step' must be a non-negative integer"),
        ("[1, 2]\n", None, "entry 0: expected a JSON object"),
        ('{"global_step": 3}', "trainer_state.json", "has no 'log_history' list"),
        ('{"log_history": {}}', "trainer_state.json", "'log_history' must be a list"),
        ('{"log_history": [', "trainer_state.json", "is not valid JSON"),
        ('{"log_history": [{"eval_loss": 1.0, "step": 5}]}', None, "no step with a 'loss'"),
        ("", None, "no step with a 'loss'"),
    ],
)
def test_bad_logs_are_rejected_with_the_reason(
    text: str, filename: str | None, reason: str
) -> None:
    with pytest.raises(InvalidTrainingLog, match=reason):
        parse_training_log(text, filename)


# --- diagnosis on hand-made curves ------------------------------------------------------------


def _points(losses: Any, rates: Any = None) -> list[LogPoint]:
    losses = np.asarray(losses, dtype=float)
    if rates is None:  # linear warmup over the first 5 steps, then flat
        rates = [1e-3 * min(1.0, (i + 1) / 5) for i in range(losses.size)]
    return [
        LogPoint(i + 1, float(loss), float(lr))
        for i, (loss, lr) in enumerate(zip(losses, rates, strict=True))
    ]


RNG = np.random.default_rng(0)
STEPS = np.arange(40)
DECAY = 4.0 * np.exp(-STEPS / 20) + 1.0 + RNG.normal(0, 0.03, 40)
FLAT = 3.0 + RNG.normal(0, 0.01, 40)
ALTERNATING = 3.0 + 0.8 * (-1.0) ** STEPS
RISING = 2.0 + 0.02 * STEPS + RNG.normal(0, 0.01, 40)
SPIKED = np.concatenate([[2.0], 40 + 10 * RNG.random(39)])


@pytest.mark.parametrize(
    ("losses", "label", "figure", "check"),
    [
        (DECAY, "healthy", "relative_decrease", lambda v: v > 0.4),
        (FLAT, "plateau", "relative_decrease", lambda v: abs(v) < 0.05),
        (ALTERNATING, "oscillating", "sign_flip_rate", lambda v: v == 1.0),
        (RISING, "diverged", "spearman_rho", lambda v: v > 0.9),
        (SPIKED, "diverged", "late_mean", lambda v: v > 30),
        (
            [3.0, 2.5, float("nan"), float("nan")],
            "diverged",
            "first_nonfinite_step",
            lambda v: v == 3,
        ),
        ([3.0, float("inf")], "diverged", "nonfinite_count", lambda v: v == 1),
    ],
)
def test_each_label_with_the_figure_behind_it(
    losses: Any, label: str, figure: str, check: Any
) -> None:
    diagnosis = diagnose(_points(losses))
    assert diagnosis.label == label
    assert diagnosis.flags == ([] if label == "healthy" else [label])
    assert check(diagnosis.figures[figure])
    assert diagnosis.reasons
    json.dumps(diagnosis.to_dict(), allow_nan=False)


def test_no_warmup_is_a_note_never_the_headline() -> None:
    constant = [1e-3] * 40
    healthy = diagnose(_points(DECAY, constant))
    assert healthy.label == "healthy"  # a constant rate with a healthy curve: no finding
    assert healthy.notes == ["no_warmup"]
    assert healthy.flags == ["no_warmup"]
    assert healthy.figures["first_lr"] == healthy.figures["peak_lr"] == 1e-3
    assert healthy.reasons[-1].startswith("note: learning rate at the first logged step")
    plateau = diagnose(_points(FLAT, constant))
    assert plateau.label == "plateau"
    assert plateau.flags == ["plateau", "no_warmup"]
    assert plateau.notes == ["no_warmup"]
    assert len(plateau.reasons) == 2


# the demo's 1e-3 run: the loss falls from 3 to 0.02, then leaps to ~1.0 and back
LEAPING = np.concatenate(
    [
        3.0 * np.exp(-np.arange(30) / 7) + 0.02,
        [0.02, 1.0, 0.02, 0.9, 0.03, 1.1, 0.02, 0.8, 0.02, 0.03],
    ]
)


def test_leaps_from_002_to_1_in_the_last_ten_steps_are_oscillating() -> None:
    diagnosis = diagnose(_points(LEAPING))
    assert diagnosis.label == "oscillating"
    assert diagnosis.figures["relative_decrease"] > 0.5  # it did fall a lot before
    assert diagnosis.figures["late_leaps_up"] == 4
    assert diagnosis.figures["late_leaps_down"] >= 4
    assert "leaps up more than 2x 4 times" in diagnosis.reasons[0]
    # the same swings in absolute terms on a loss near 3 are ordinary noise: healthy
    calm = LEAPING.copy()
    calm[-10:] = 0.5 + np.array([0.02, 0.05, 0.02, 0.04, 0.03, 0.05, 0.02, 0.04, 0.02, 0.03])
    assert diagnose(_points(calm)).label != "oscillating"


def test_precedence_diverged_over_oscillating_over_plateau() -> None:
    swinging_upwards = RISING * (1 + 0.3 * (-1.0) ** STEPS)
    assert diagnose(_points(swinging_upwards)).label == "diverged"
    assert diagnose(_points(ALTERNATING)).label == "oscillating"  # also no net decrease
    decaying_with_swings = DECAY * (1 + 0.2 * (-1.0) ** STEPS)
    assert diagnose(_points(decaying_with_swings)).label == "healthy"


def test_too_short_a_log_cannot_be_diagnosed() -> None:
    with pytest.raises(InvalidTrainingLog, match="at least 4 logged steps"):
        diagnose(_points([3.0, 2.0, 1.0]))


# --- diagnosis on real training runs of the tiny Llama ----------------------------------------

SENTENCES = [
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "Water boils at one hundred degrees.",
    "The quick brown fox jumps over the lazy dog.",
    "Seven days make a week.",
]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny model, shared CPU: one torch thread is faster than contending for several."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(rate: float, *, optimizer: str = "adamw", steps: int = 30, warmup: int = 0) -> str:
    """Train the tiny Llama on fixed sentences; return its log as step JSONL."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir())
    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir())
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt: torch.optim.Optimizer = (
        torch.optim.AdamW(model.parameters(), lr=rate)
        if optimizer == "adamw"
        else torch.optim.SGD(model.parameters(), lr=rate)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    lines = []
    for step in range(1, steps + 1):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=float("inf"))
        record = {"step": step, "loss": loss.item(), "learning_rate": schedule.get_last_lr()[0]}
        lines.append(json.dumps({**record, "grad_norm": grad_norm.item()}))
        opt.step()
        schedule.step()
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("rate", "optimizer", "warmup", "label"),
    [
        (1e-3, "adamw", 5, "healthy"),
        (1e-7, "adamw", 5, "plateau"),
        (5.0, "adamw", 0, "diverged"),  # loss jumps ~40x and stays there
        (50.0, "sgd", 0, "diverged"),  # loss goes NaN
    ],
)
@pytest.mark.usefixtures("one_thread")
def test_real_training_runs(
    tmp_path: Path, rate: float, optimizer: str, warmup: int, label: str
) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(_train(rate, optimizer=optimizer, warmup=warmup))
    points = parse_training_log(path.read_text(), path.name)
    assert len(points) == 30
    diagnosis = diagnose(points)
    assert diagnosis.label == label
    assert ("no_warmup" in diagnosis.flags) == (warmup == 0)


@pytest.mark.usefixtures("one_thread")
def test_real_trainer_state_json_from_the_hf_trainer(tmp_path: Path) -> None:
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        LlamaForCausalLM,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir())
    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir())
    examples = [{"input_ids": tokenizer(s)["input_ids"]} for s in SENTENCES]
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=30,
        learning_rate=3e-3,
        warmup_steps=5,
        per_device_train_batch_size=len(SENTENCES),
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=examples,
        eval_dataset=examples,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.train()
    state_path = tmp_path / "trainer_state.json"
    trainer.state.save_to_json(str(state_path))
    history = json.loads(state_path.read_text())["log_history"]
    assert any("eval_loss" in entry for entry in history)  # eval and summary entries exist

    points = parse_training_log(state_path.read_text(), state_path.name)
    assert [p.step for p in points] == list(range(1, 31))
    assert all(p.learning_rate is not None and p.grad_norm is not None for p in points)
    diagnosis = diagnose(points)
    assert diagnosis.label == "healthy"
    assert diagnosis.figures["first_lr"] < diagnosis.figures["peak_lr"]
