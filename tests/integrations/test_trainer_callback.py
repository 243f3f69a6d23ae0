"""``TunegateCallback`` in a real ``transformers.Trainer`` run (a PEFT LoRA on the tiny
Llama, a few steps) against a real embedded server, and against no server at all."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    set_seed,
)

from service.checkpoints import inspect_checkpoint
from service.cli.client import RetryPolicy
from service.cli.embedded import free_port
from service.errors import CheckpointRejected
from service.finetune import encode_example
from tests.cli.conftest import QUESTIONS, LiveServer
from tunegate.integrations import TunegateCallback, stage_checkpoint

LR = 2e-3
STEPS, SAVE_EVERY = 4, 2


def _train(
    tiny: Path, out: Path, callback: TunegateCallback | None
) -> tuple[Trainer, list[dict[str, Any]]]:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    set_seed(0)  # the LoRA initialisation too: runs are compared loss for loss
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    rows = []
    for question in QUESTIONS:
        ids, labels = encode_example(tokenizer, (question, "Arr, matey!"))
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        save_steps=SAVE_EVERY,
        learning_rate=LR,
        lr_scheduler_type="linear",
        per_device_train_batch_size=1,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        save_only_model=False,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, callbacks=[callback] if callback else []
    )
    trainer.train()
    losses = [e for e in trainer.state.log_history if "loss" in e]
    return trainer, losses


def test_each_save_becomes_a_candidate_with_its_rate_step_and_log(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = live_server.checkpoints / "trainer-run"
    callback = TunegateCallback(
        family="tiny",
        dataset="ds",
        sweep="2026-w48",
        url=live_server.url,
        token=live_server.token,
        tags={"team": "support"},
        wait_timeout=300,
    )
    with caplog.at_level(logging.INFO, logger="tunegate.integrations"):
        _, losses = _train(live_server.tiny, out, callback)
    assert len(losses) == STEPS

    assert [r.step for r in callback.results] == [2, 4]
    headers = {"Authorization": f"Bearer {live_server.token}"}
    for result in callback.results:
        assert result.error is None
        assert result.verdict == "pass", result.line()
        staged = out / "tunegate" / f"checkpoint-{result.step}"
        assert result.checkpoint == staged
        # the model files only: the Trainer's pickles stay behind
        assert (staged / "adapter_model.safetensors").is_file()
        assert not [p for p in staged.rglob("*") if p.suffix in (".pt", ".pth", ".bin")]
        assert (out / f"checkpoint-{result.step}" / "optimizer.pt").is_file()
        candidate = httpx.get(
            f"{live_server.url}/v1/candidates/{result.candidate_id}", headers=headers
        ).json()
        assert candidate["kind"] == "lora"
        assert candidate["learning_rate"] == pytest.approx(LR)
        assert candidate["sweep"] == "2026-w48"
        assert candidate["checkpoint_path"] == str(staged.resolve())
        tags = candidate["tags"]
        assert (tags["step"], tags["team"], tags["epoch"]) == (
            str(result.step),
            "support",
            f"{result.step / len(QUESTIONS):g}",
        )
        # linear decay: the scheduler's rate at the save is below args.learning_rate
        expected = LR * (STEPS - result.step) / STEPS
        assert float(tags.get("scheduler_lr", LR)) == pytest.approx(expected, rel=1e-4)
        # trainer_state.json as the training log: one point per logged step so far (the
        # server wants 4 for its diagnosis: the first save is registered without it)
        if result.step < 4:
            assert candidate["training_log"] is None
            assert "at least 4 logged steps" in result.extra["training_log_refused"]
        else:
            logged = [p["step"] for p in candidate["training_log"]]
            assert logged == list(range(1, result.step + 1))
        state = json.loads((out / f"checkpoint-{result.step}" / "trainer_state.json").read_text())
        assert state["global_step"] == result.step
    assert "step 4 (checkpoint-4): candidate" in caplog.text
    assert "verdict pass" in caplog.text
    sweep = httpx.get(
        f"{live_server.url}/v1/candidates?family=tiny&sweep=2026-w48", headers=headers
    ).json()
    # one candidate per save, no duplicates from retries
    assert sorted(c["id"] for c in sweep) == sorted(r.candidate_id for r in callback.results)


def test_training_is_unaffected_when_the_server_is_unreachable(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = TunegateCallback(
        family="tiny",
        dataset="ds",
        url=f"http://127.0.0.1:{free_port()}",
        token="nobody",
        retry=RetryPolicy(attempts=2, backoff_seconds=0.05),
        wait_timeout=60,
    )
    with caplog.at_level(logging.WARNING, logger="tunegate.integrations"):
        trainer, losses = _train(live_server.tiny, tmp_path / "down", down)
    _, reference = _train(live_server.tiny, tmp_path / "plain", None)
    assert trainer.state.global_step == STEPS
    assert [e["loss"] for e in losses] == [e["loss"] for e in reference]
    assert [r.step for r in down.results] == [2, 4]
    for result in down.results:
        assert result.candidate_id is None
        assert result.error is not None
        assert result.error.startswith("not submitted: cannot reach the tunegate server")
    assert "step 2 (checkpoint-2): not submitted: cannot reach" in caplog.text


def test_a_full_checkpoint_is_staged_without_the_trainers_pickles(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A full fine-tune's checkpoint folder: the model folder goes, optimizer/RNG stay."""
    checkpoint = tmp_path / "checkpoint-6"
    shutil.copytree(live_server.tiny, checkpoint)
    for pickle_name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        (checkpoint / pickle_name).write_bytes(b"\x80\x04pickled")
    (checkpoint / "trainer_state.json").write_text('{"log_history": []}')
    with pytest.raises(CheckpointRejected, match="pickle-format weights are refused"):
        inspect_checkpoint(checkpoint, [tmp_path])
    staged = stage_checkpoint(checkpoint, tmp_path / "tunegate" / "checkpoint-6")
    info = inspect_checkpoint(staged, [tmp_path])
    assert info.kind == "full"
    assert set(info.files) == {p.name for p in live_server.tiny.iterdir() if p.is_file()}


def test_a_server_that_cannot_see_the_run_gets_the_checkpoint_uploaded(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Training on another machine: the output folder is outside the server's roots."""
    callback = TunegateCallback(
        family="tiny", url=live_server.url, token=live_server.token, wait_timeout=60
    )
    _train(live_server.tiny, tmp_path / "elsewhere", callback)
    headers = {"Authorization": f"Bearer {live_server.token}"}
    for result in callback.results:
        assert result.error is None, result.line()
        assert result.evaluation_id is None  # no dataset named: registered only
        candidate = httpx.get(
            f"{live_server.url}/v1/candidates/{result.candidate_id}", headers=headers
        ).json()
        assert candidate["source"] == "upload"
        assert candidate["tags"]["step"] == str(result.step)
        assert "adapter_model.safetensors" in candidate["digests"]
        assert not any(name.endswith((".pt", ".pth", ".bin")) for name in candidate["digests"])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TRL's config sets a renamed argument
def test_trl_sft_trainer_is_a_trainer(live_server: LiveServer, tmp_path: Path) -> None:
    trl = pytest.importorskip("trl", reason="TRL (the dev extra)")
    datasets = pytest.importorskip("datasets")
    tokenizer = AutoTokenizer.from_pretrained(live_server.tiny)
    set_seed(0)
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Arr!"}]}
        for q in QUESTIONS
    ]
    callback = TunegateCallback(
        family="tiny", sweep="sft", url=live_server.url, token=live_server.token, wait_timeout=60
    )
    args = trl.SFTConfig(
        output_dir=str(live_server.checkpoints / "sft-run"),
        max_steps=4,
        save_steps=4,
        learning_rate=LR,
        per_device_train_batch_size=1,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = trl.SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(live_server.tiny),
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        callbacks=[callback],
    )
    trainer.train()
    [result] = callback.results
    assert result.error is None, result.line()
    headers = {"Authorization": f"Bearer {live_server.token}"}
    candidate = httpx.get(
        f"{live_server.url}/v1/candidates/{result.candidate_id}", headers=headers
    ).json()
    assert (candidate["kind"], candidate["sweep"], candidate["tags"]["step"]) == (
        "lora",
        "sft",
        "4",
    )
    assert candidate["learning_rate"] == pytest.approx(LR)
    assert [p["step"] for p in candidate["training_log"]] == [1, 2, 3, 4]
