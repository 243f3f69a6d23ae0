"""Fixtures for the scorer tests: the packaged MiniLM, the tiny Llama, a tiny NLI model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm() -> object:
    """The packaged all-MiniLM-L6-v2, loaded once (evaluators share it through the cache)."""
    from evaluators.embeddings import load_embedding_model

    return load_embedding_model()


def build_tiny_nli(folder: Path, id2label: dict[int, str]) -> Path:
    """A real, randomly initialised BERT sequence classifier saved as safetensors.

    It uses MiniLM's WordPiece tokenizer, so premise/hypothesis pairs are encoded exactly as
    a real NLI cross-encoder would encode them; its judgements are random but deterministic.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from evaluators.embeddings import default_embedding_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_embedding_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={label: index for index, label in id2label.items()},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-nli")
    return build_tiny_nli(folder, {0: "entailment", 1: "neutral", 2: "contradiction"})
