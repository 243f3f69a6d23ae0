"""Hallucination: invented numbers and names are flagged, supported paraphrases are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.base import Example
from evaluators.claims import extract_claims, numbers, split_sentences
from evaluators.errors import EvaluatorConfigError
from evaluators.hallucination import HallucinationEvaluator
from evaluators.nli import entailment_index, load_nli_judge
from tests.evaluators.conftest import build_tiny_nli

CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was completed in "
    "1889 as the entrance to the World's Fair. The tower is 330 metres tall."
)
EIFFEL = Example(id="eiffel", input="Tell me about the Eiffel Tower.", context=CONTEXT)


@pytest.fixture(scope="module")
def overlap(minilm: object) -> HallucinationEvaluator:
    return HallucinationEvaluator()


def hallucination(
    evaluator: HallucinationEvaluator, output: str, example: Example = EIFFEL
) -> float:
    return evaluator.score([example], [output])[0]["hallucination"]


def test_supported_paraphrase_is_not_flagged(overlap: HallucinationEvaluator) -> None:
    assert (
        hallucination(overlap, "The Eiffel Tower, located in Paris, was finished in 1889.") == 0.0
    )
    assert hallucination(overlap, "It is a 330 metre tall iron tower in Paris.") == 0.0


def test_invented_number_is_flagged(overlap: HallucinationEvaluator) -> None:
    assert hallucination(overlap, "The Eiffel Tower was completed in 1925.") == 1.0


def test_invented_name_is_flagged(overlap: HallucinationEvaluator) -> None:
    assert hallucination(overlap, "The Eiffel Tower in Paris was built by Gustave Eiffel.") == 1.0


def test_off_topic_claim_is_flagged(overlap: HallucinationEvaluator) -> None:
    assert hallucination(overlap, "Bananas are an excellent source of potassium.") == 1.0


def test_score_is_the_share_of_unsupported_claims(overlap: HallucinationEvaluator) -> None:
    output = "Sure! The tower is 330 metres tall. It attracts 7 million visitors a year."
    # "Sure!" asserts nothing; one of the two remaining claims invents a number.
    assert hallucination(overlap, output) == 0.5


def test_output_with_no_claim_scores_as_fully_unsupported(overlap: HallucinationEvaluator) -> None:
    assert hallucination(overlap, "") == 1.0
    assert hallucination(overlap, "Sure!") == 1.0


def test_reference_counts_as_a_source(overlap: HallucinationEvaluator) -> None:
    example = Example(
        id="ref", input="Who wrote Hamlet?", reference="William Shakespeare wrote it."
    )
    assert hallucination(overlap, "Hamlet was written by William Shakespeare.", example) == 0.0
    assert hallucination(overlap, "Hamlet was written by Christopher Marlowe.", example) == 1.0


def test_input_alone_is_not_enough_to_apply(overlap: HallucinationEvaluator) -> None:
    assert overlap.score([Example(id="open", input="Write a poem.")], ["Roses are red."]) == [{}]


def test_claim_analysis() -> None:
    assert split_sentences("- First point.\n2. Second one! Third?") == [
        "First point.",
        "Second one!",
        "Third?",
    ]
    assert numbers("It cost 1,250.50 dollars in 1889, not 3.0") == {"1250.5", "1889", "3"}
    (claim,) = extract_claims("The tower was visited by Marie Curie in 1900.")
    assert claim.numbers == {"1900"}
    assert claim.entities == {"marie", "curie"}


# --- the NLI backend, on a real tiny random classifier -------------------------------------


def test_nli_backend_reads_labels_and_scores_in_range(tiny_nli: Path) -> None:
    evaluator = HallucinationEvaluator(backend="nli", nli_model_path=tiny_nli)
    assert load_nli_judge(tiny_nli).entailment == 0
    outputs = [
        "The tower is in Paris. It was completed in 1889.",
        "Bananas are yellow.",
        "",
    ]
    first = evaluator.score([EIFFEL] * 3, outputs)
    assert first == evaluator.score([EIFFEL] * 3, outputs)
    values = [row["hallucination"] for row in first]
    assert all(0.0 <= value <= 1.0 for value in values)
    # Two claims, then one, then none: the score is a share of claims.
    assert values[0] in (0.0, 0.5, 1.0)
    assert values[1] in (0.0, 1.0)
    assert values[2] == 1.0
    judge = load_nli_judge(tiny_nli)
    premise = CONTEXT + "\n" + EIFFEL.input
    probabilities = judge.entailment_probabilities([premise] * 2, outputs[0].split(". "))
    expected = sum(p < evaluator.nli_threshold for p in probabilities) / 2
    assert values[0] == expected


def test_nli_threshold_decides_support(tiny_nli: Path) -> None:
    premise, claim = CONTEXT + "\n" + EIFFEL.input, "The tower is in Paris."
    (probability,) = load_nli_judge(tiny_nli).entailment_probabilities([premise], [claim])
    assert 0.0 < probability < 1.0
    below = HallucinationEvaluator(
        backend="nli", nli_model_path=tiny_nli, nli_threshold=probability - 1e-4
    )
    above = HallucinationEvaluator(
        backend="nli", nli_model_path=tiny_nli, nli_threshold=probability + 1e-4
    )
    assert hallucination(below, claim) == 0.0
    assert hallucination(above, claim) == 1.0


def test_nli_model_without_entailment_label_is_refused(tmp_path: Path) -> None:
    folder = build_tiny_nli(tmp_path / "sentiment", {0: "negative", 1: "positive"})
    assert json.loads((folder / "config.json").read_text())["id2label"] == {
        "0": "negative",
        "1": "positive",
    }
    with pytest.raises(EvaluatorConfigError, match="entailment"):
        HallucinationEvaluator(backend="nli", nli_model_path=folder)


def test_entailment_label_lookup() -> None:
    assert entailment_index({0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}) == 2
    assert entailment_index({0: "entailment", 1: "not_entailment"}) == 0
    with pytest.raises(EvaluatorConfigError):
        entailment_index({0: "LABEL_0", 1: "LABEL_1"})


def test_nli_backend_needs_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(EvaluatorConfigError, match="nli_model_path"):
        HallucinationEvaluator(backend="nli")
    with pytest.raises(EvaluatorConfigError, match=r"no config\.json"):
        HallucinationEvaluator(backend="nli", nli_model_path=tmp_path)


def test_flipped_negation_is_flagged(overlap: HallucinationEvaluator) -> None:
    assert hallucination(overlap, "The Eiffel Tower was completed in 1889.") == 0.0
    assert hallucination(overlap, "The Eiffel Tower was not completed in 1889.") == 1.0
    negative = Example(id="neg", input="", context="The tower cannot be climbed in winter.")
    assert hallucination(overlap, "In winter the tower cannot be climbed.", negative) == 0.0
    assert hallucination(overlap, "In winter the tower can be climbed.", negative) == 1.0


def test_hallucination_labelled_set_covers_the_hard_cases() -> None:
    from evaluators.calibration import load_labelled, split_halves

    rows = load_labelled("hallucination_labelled.jsonl")
    kinds = {row["kind"] for row in rows}
    assert {"negation", "swapped_number", "swapped_name", "paraphrase", "world_knowledge"} <= kinds
    assert all(row["supported"] == (row["kind"] in ("verbatim", "paraphrase")) for row in rows)
    fit, held = split_halves(rows)
    assert sorted(fit + held) == list(range(len(rows)))
