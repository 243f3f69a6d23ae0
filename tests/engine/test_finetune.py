"""train_lora: a real loop, a real log, reproducible, divergence logged not raised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from service.errors import InvalidRequest
from service.finetune import encode_example, train_lora
from tests.adapters import CAPITALS


def weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = load_file(str(folder / "adapter_model.safetensors"))
    return tensors


def log_lines(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trains_and_logs_every_step(tiny_base: Path, tmp_path: Path) -> None:
    result = train_lora(
        tiny_base, CAPITALS, tmp_path / "a", learning_rate=1e-2, steps=6, warmup_steps=2
    )
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert result.log_path == tmp_path / "a" / "training_log.jsonl"
    lines = log_lines(result.log_path)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert set(lines[0]) == {"step", "loss", "learning_rate", "grad_norm"}
    lrs = [line["learning_rate"] for line in lines]
    assert lrs[0] == 0.0
    assert lrs[1] == pytest.approx(5e-3)
    assert lrs[2] == pytest.approx(1e-2)
    assert lrs[2] > lrs[3] > lrs[4] > lrs[5] > 0  # linear decay after warmup
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert result.final_loss == lines[-1]["loss"]
    assert not result.diverged
    assert result.steps_run == 6
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16)
    assert set(config["target_modules"]) == {"q_proj", "v_proj"}


def test_same_seed_same_weights_other_seed_other_weights(tiny_base: Path, tmp_path: Path) -> None:
    runs = [
        train_lora(tiny_base, CAPITALS, tmp_path / name, learning_rate=1e-2, steps=3, seed=seed)
        for name, seed in (("x", 0), ("y", 0), ("z", 1))
    ]
    x, y, z = (weights(r.adapter_dir) for r in runs)
    assert all(torch.equal(x[k], y[k]) for k in x)
    assert log_lines(runs[0].log_path) == log_lines(runs[1].log_path)
    assert not all(torch.equal(x[k], z[k]) for k in x)


def test_init_adapter_gives_identical_start(tiny_base: Path, tmp_path: Path) -> None:
    fresh = train_lora(tiny_base, CAPITALS, tmp_path / "fresh", learning_rate=1e-2, steps=0, seed=7)
    start = weights(fresh.adapter_dir)
    assert all(torch.count_nonzero(v) == 0 for k, v in start.items() if "lora_B" in k)
    # lr 0 with another seed: the weights are exactly the shared start
    still = train_lora(
        tiny_base,
        CAPITALS,
        tmp_path / "s",
        learning_rate=0.0,
        steps=2,
        seed=3,
        init_adapter_dir=fresh.adapter_dir,
    )
    assert all(torch.equal(start[k], v) for k, v in weights(still.adapter_dir).items())
    moved = train_lora(
        tiny_base,
        CAPITALS,
        tmp_path / "m",
        learning_rate=1e-2,
        steps=2,
        seed=3,
        init_adapter_dir=fresh.adapter_dir,
    )
    assert not all(torch.equal(start[k], v) for k, v in weights(moved.adapter_dir).items())
    with pytest.raises(InvalidRequest, match="r=8"):
        train_lora(
            tiny_base,
            CAPITALS,
            tmp_path / "bad",
            learning_rate=1e-2,
            steps=1,
            rank=4,
            init_adapter_dir=fresh.adapter_dir,
        )


def test_divergence_is_logged_not_raised(tiny_base: Path, tmp_path: Path) -> None:
    result = train_lora(
        tiny_base,
        CAPITALS,
        tmp_path / "nan",
        learning_rate=1e20,
        steps=20,
        target_modules=("up_proj", "down_proj"),
    )
    lines = log_lines(result.log_path)
    assert result.diverged
    assert math.isnan(result.final_loss)
    assert result.steps_run < 20  # stopped early
    assert sum(math.isnan(line["loss"]) for line in lines) == 3
    assert "NaN" in result.log_path.read_text()
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_pairs_learn_only_the_answer(tiny_base: Path) -> None:
    from service.engine.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_base)
    ids, labels = encode_example(tokenizer, ("What is the capital of France?", "Paris."))
    assert len(ids) == len(labels)
    learnt = [t for t in labels if t != -100]
    assert tokenizer.decode(learnt).startswith("Paris.<|im_end|>")
    prompt_part = tokenizer.decode(ids[: len(ids) - len(learnt)])
    assert prompt_part.endswith("<|im_start|>assistant\n")
    assert "France" in prompt_part
    text_ids, text_labels = encode_example(tokenizer, "plain text learns every token")
    assert text_ids == text_labels


def test_refuses_empty_data(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="no training data"):
        train_lora(tiny_base, [], tmp_path, learning_rate=1e-3, steps=1)
