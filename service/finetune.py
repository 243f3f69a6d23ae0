"""Real LoRA fine-tuning in a plain PyTorch loop (the demo and the test fixtures use it).

Same seed, same data order and same initial adapter; AdamW with a linear
warmup/decay schedule; one JSONL line per logged step with the loss, the
learning rate the step used and the gradient norm. A NaN or infinite loss is
logged as such (JSON ``NaN``/``Infinity``, as ``trainer_state.json`` writes
them), its update is skipped, and training stops after a few in a row: the
log shows the divergence instead of the loop crashing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from service.errors import InvalidRequest, ModelLoadError

if TYPE_CHECKING:
    from peft import PeftModel

    from service.engine.hf import CausalLM, Tokenizer


TrainingData = Sequence[str] | Sequence[tuple[str, str]]
LOG_NAME = "training_log.jsonl"
MAX_NONFINITE_STEPS = 3
MAX_LENGTH = 512


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    log_path: Path
    final_loss: float
    steps_run: int
    diverged: bool


def encode_example(
    tokenizer: Tokenizer, item: str | tuple[str, str]
) -> tuple[list[int], list[int]]:
    """(input ids, labels): plain text learns every token; a pair only its answer."""
    if isinstance(item, str):
        ids = list(tokenizer(item, add_special_tokens=True)["input_ids"])[:MAX_LENGTH]
        return ids, list(ids)
    prompt, answer = item
    user = [{"role": "user", "content": prompt}]
    prompt_text = str(
        tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    )
    full = str(
        tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": answer}], tokenize=False
        )
    )
    if not full.startswith(prompt_text):
        raise InvalidRequest("the chat template does not extend the prompt with the answer")
    prompt_ids = list(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    answer_ids = list(tokenizer(full[len(prompt_text) :], add_special_tokens=False)["input_ids"])
    ids = (prompt_ids + answer_ids)[:MAX_LENGTH]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:MAX_LENGTH]
    return ids, labels


def _batches(
    examples: list[tuple[list[int], list[int]]], batch_size: int, seed: int, pad_id: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded batches, reshuffled every epoch by a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids, _ in chunk)
            ids_t = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            labels_t = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (ids, labels) in enumerate(chunk):
                ids_t[row, : len(ids)] = torch.tensor(ids)
                labels_t[row, : len(labels)] = torch.tensor(labels)
                mask[row, : len(ids)] = 1
            yield {"input_ids": ids_t, "attention_mask": mask, "labels": labels_t}


def _peft_model(
    base: CausalLM,
    init_adapter_dir: Path | None,
    rank: int,
    alpha: int,
    target_modules: Sequence[str],
) -> PeftModel:
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter_dir is None:
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=list(target_modules),
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base, config)
    model = PeftModel.from_pretrained(base, init_adapter_dir, is_trainable=True)
    loaded = model.peft_config["default"]
    if (loaded.r, loaded.lora_alpha, set(loaded.target_modules)) != (
        rank,
        alpha,
        set(target_modules),
    ):
        raise InvalidRequest(
            f"init adapter {init_adapter_dir} has r={loaded.r}, alpha={loaded.lora_alpha}, "
            f"targets={sorted(loaded.target_modules)}; asked for r={rank}, alpha={alpha}, "
            f"targets={sorted(target_modules)}"
        )
    return model


def train_lora(
    base_dir: Path,
    data: TrainingData,
    out_dir: Path,
    *,
    learning_rate: float,
    steps: int,
    seed: int = 0,
    rank: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    batch_size: int = 4,
    warmup_steps: int = 0,
    init_adapter_dir: Path | None = None,
    log_every: int = 1,
    max_grad_norm: float = 1.0,
) -> TrainResult:
    """Train a LoRA adapter on ``base_dir`` (on CPU, fp32) and save it to ``out_dir``.

    ``data`` is plain texts (causal LM loss on every token) or (prompt, answer)
    pairs (chat template, loss on the answer tokens only). ``steps=0`` saves the
    freshly initialised adapter (``lora_B`` = 0): pass it as ``init_adapter_dir``
    so every rate of a sweep starts from the same weights. Writes
    ``adapter_config.json`` + ``adapter_model.safetensors`` and
    ``training_log.jsonl`` (``{step, loss, learning_rate, grad_norm}``).
    Returns the last step's loss (NaN when training diverged).
    """
    from transformers import AutoModelForCausalLM, get_scheduler

    from service.engine.loading import load_tokenizer

    if not data:
        raise InvalidRequest("no training data")
    if steps < 0 or batch_size < 1 or log_every < 1:
        raise InvalidRequest("steps must be >= 0, batch_size and log_every >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(seed)
    try:
        base = AutoModelForCausalLM.from_pretrained(
            base_dir,
            trust_remote_code=False,
            use_safetensors=True,
            local_files_only=True,
            dtype=torch.float32,
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load the base model in {base_dir}: {exc}") from exc
    tokenizer = load_tokenizer(Path(base_dir))
    model = _peft_model(base, init_adapter_dir, rank, alpha, target_modules)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=warmup_steps, num_training_steps=max(steps, 1)
    )
    examples = [encode_example(tokenizer, item) for item in data]
    batches = _batches(examples, batch_size, seed, tokenizer.pad_token_id)

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_NAME
    final_loss, nonfinite, step = math.nan, 0, 0
    model.train()
    with log_path.open("w", encoding="utf-8") as log:
        for step in range(1, steps + 1):
            lr = float(scheduler.get_last_lr()[0])
            optimizer.zero_grad(set_to_none=True)
            loss = model(**next(batches)).loss
            final_loss = float(loss.detach())
            grad_norm = math.nan
            if math.isfinite(final_loss):
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
            if math.isfinite(grad_norm):
                optimizer.step()
                nonfinite = 0
            else:  # skip the update, as mixed-precision trainers do on overflow
                optimizer.zero_grad(set_to_none=True)
                nonfinite += 1
            scheduler.step()
            if step % log_every == 0 or step == steps or nonfinite:
                record = {"step": step, "loss": final_loss, "learning_rate": lr}
                log.write(json.dumps({**record, "grad_norm": grad_norm}) + "\n")
                log.flush()
            if nonfinite >= MAX_NONFINITE_STEPS:
                break
    model.save_pretrained(out_dir, safe_serialization=True)
    return TrainResult(
        adapter_dir=out_dir,
        log_path=log_path,
        final_loss=final_loss,
        steps_run=step,
        diverged=nonfinite > 0,
    )
