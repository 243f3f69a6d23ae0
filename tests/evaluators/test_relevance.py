"""Relevance: on-topic answers beat off-topic ones; empty answers score 0."""

from __future__ import annotations

import pytest

from evaluators.base import Example
from evaluators.embeddings import load_embedding_model
from evaluators.relevance import RelevanceEvaluator

QUESTION = Example(
    id="pw",
    input="How do I reset my password?",
    reference="Click 'Forgot password' on the login page and follow the link in the email.",
)


@pytest.fixture(scope="module")
def relevance(minilm: object) -> RelevanceEvaluator:
    return RelevanceEvaluator()


def test_relevant_answer_beats_off_topic(relevance: RelevanceEvaluator) -> None:
    on_topic, off_topic = relevance.score(
        [QUESTION, QUESTION],
        [
            "Open the login page, choose Forgot password and use the emailed link.",
            "The weather in Lisbon is sunny with a light breeze today.",
        ],
    )
    assert on_topic["relevance"] > off_topic["relevance"] + 0.3
    assert on_topic["relevance_reference"] > 0.8
    assert off_topic["relevance_reference"] < 0.2


def test_empty_output_scores_zero(relevance: RelevanceEvaluator) -> None:
    assert relevance.score([QUESTION], ["   \n"]) == [
        {"relevance": 0.0, "relevance_reference": 0.0}
    ]


def test_reference_metric_only_with_a_reference(relevance: RelevanceEvaluator) -> None:
    (row,) = relevance.score([Example(id="q", input="Name a colour.")], ["Blue."])
    assert set(row) == {"relevance"}


def test_model_is_loaded_once_per_path_and_device(minilm: object) -> None:
    assert load_embedding_model() is minilm
    assert load_embedding_model(device="cpu") is minilm


def test_each_text_is_embedded_once_per_model(minilm: object) -> None:
    import torch

    from evaluators import embeddings

    model = load_embedding_model()
    texts = ["a cached sentence about passwords", "another one about the login page"]
    first = embeddings.embed(model, texts)
    encoded: list[list[str]] = []
    encode = model.encode

    def counting(sentences: list[str], **kw: object) -> object:
        encoded.append(list(sentences))
        return encode(sentences, **kw)

    model.encode = counting  # type: ignore[method-assign]  # the real encode, counted
    try:
        again = embeddings.embed(model, [texts[1], "a third, new sentence", texts[0]])
    finally:
        del model.encode
    assert encoded == [["a third, new sentence"]]  # only the new text is encoded
    assert torch.equal(again[0], first[1])
    assert torch.equal(again[2], first[0])
    alone = model.encode([texts[1]], convert_to_tensor=True, normalize_embeddings=True)
    assert torch.allclose(again[0], alone[0].float().cpu(), atol=1e-5)
