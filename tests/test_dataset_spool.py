"""The streamed reader (DatasetSpool) against the in-memory one: same digest, same refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.dataset_format import example_record, parse_dataset
from service.dataset_spool import DatasetSpool
from service.errors import InvalidDataset
from tests.test_datasets_parse import BAD_LINES

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
GOOD = (
    "\ufeff"  # a BOM, then CRLF lines, blank lines, held-out text between examples
    + json.dumps({"generation": {"max_new_tokens": 8, "system": "Terse."}})
    + "\r\n\r\n"
    + json.dumps({"input": "Capital of France?", "answers": ["Paris"], "cohort": "geo"})
    + "\r\n"
    + json.dumps({"heldout": "Held-out text \u2028 with a line separator."})
    + "\n"
    + json.dumps({"id": "chat", "messages": CHAT, "domain": "out", "expect": "comply"})
    + "\n"
    + json.dumps({"id": 70, "input": "été", "choices": ["a", "b"], "answer": 1})
    + "\n"
    + json.dumps({"input": "q", "json_schema": {"type": "object"}, "target": "[[[[[[[[[["})
    + "\n"
    + json.dumps({"heldout": "last"})
).encode()


def _spool(tmp_path: Path, body: bytes, chunk: int, **limits: int) -> DatasetSpool:
    spool = DatasetSpool(tmp_path / "scratch", max_line_bytes=limits.get("line", 1 << 20))
    try:
        for start in range(0, len(body), chunk):
            spool.feed(body[start : start + chunk])
        return spool.finish()
    except BaseException:
        spool.close()
        raise


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_streamed_push_is_the_same_content_as_in_memory(tmp_path: Path, chunk: int) -> None:
    expected = parse_dataset(GOOD)
    spool = _spool(tmp_path, GOOD, chunk)
    try:
        assert spool.digest == expected.digest
        assert spool.generation == expected.generation
        assert spool.counts == expected.counts
        assert (spool.counts.n_examples, spool.counts.n_heldout) == (4, 2)
        assert list(spool.example_records()) == [example_record(e) for e in expected.examples]
        assert list(spool.heldout_texts()) == expected.heldout
    finally:
        spool.close()
    assert not spool.path.exists()
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.parametrize(("body", "expected"), BAD_LINES)
def test_streamed_refusals_name_the_same_line(tmp_path: Path, body: bytes, expected: str) -> None:
    with pytest.raises(InvalidDataset) as info:
        _spool(tmp_path, body, 5)
    assert info.value.detail.startswith(expected), info.value.detail
    assert list((tmp_path / "scratch").iterdir()) == []


def test_nesting_up_to_the_limit_is_accepted(tmp_path: Path) -> None:
    body = b'{"input": "a", "json_schema": {"x": ' + b"[" * 62 + b"]" * 62 + b"}}"
    _spool(tmp_path, body, 100).close()  # 64 levels: the record, the schema, 62 arrays
    with pytest.raises(InvalidDataset, match="nested deeper than 64"):
        _spool(tmp_path, body.replace(b"[", b"[[", 1).replace(b"]", b"]]", 1), 100)


def test_a_line_over_the_limit_is_refused_before_it_is_whole(tmp_path: Path) -> None:
    spool = DatasetSpool(tmp_path, max_line_bytes=100)
    try:
        spool.feed(b'{"input": "a"}\n{"input": "b"}\n')
        for _ in range(10):  # line 3 has not ended yet, and is 100 bytes long
            spool.feed(b"x" * 10)
        with pytest.raises(InvalidDataset) as info:
            spool.feed(b"x")
        assert info.value.detail == (
            "line 3: longer than the limit of 100 bytes (TUNEGATE_MAX_DATASET_LINE_BYTES)"
        )
    finally:
        spool.close()


def test_duplicate_ids_are_found_in_the_spool(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"k{i}", "input": "q"}) for i in range(3000)]
    lines[2500] = json.dumps({"id": "k17", "input": "again"})
    with pytest.raises(InvalidDataset) as info:
        _spool(tmp_path, "\n".join(lines).encode(), 4096)
    assert info.value.detail == 'line 2501: duplicate id "k17" (first used on line 18)'
