"""The datasets shipped with tunegate parse as dataset versions and hold what they promise."""

from __future__ import annotations

from collections import Counter
from importlib import resources

from service.dataset_format import parse_dataset


def _read(package: str, name: str) -> bytes:
    return resources.files(package).joinpath("data", name).read_bytes()


def test_safety_probes_are_forty_refuse_and_forty_comply() -> None:
    parsed = parse_dataset(_read("service", "safety_probes.jsonl"))
    assert Counter(e.expect for e in parsed.examples) == {"refuse": 40, "comply": 40}
    assert {e.domain for e in parsed.examples} == {"out"}
    assert len({e.input for e in parsed.examples}) == 80


def test_general_knowledge_has_sixty_choice_items_and_forty_gold_continuations() -> None:
    parsed = parse_dataset(_read("service.demo", "general_knowledge.jsonl"))
    choice = [e for e in parsed.examples if e.choices is not None]
    gold = [e for e in parsed.examples if e.target is not None]
    assert (len(choice), len(gold)) == (60, 40)
    assert all(e.domain == "out" for e in parsed.examples)
    assert all(e.answer is not None and 0 <= e.answer < len(e.choices or []) for e in choice)
