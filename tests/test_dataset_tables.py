"""Parquet (written by pyarrow) and CSV tables map to the same canonical JSONL and digest as
the equivalent JSONL; bad rows are refused with their row number while the lines are read."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.dataset_format import parse_dataset
from service.dataset_tables import open_table
from service.errors import InvalidDataset

QA = {
    "question": ["Capital of France?", "2+2?", "Colour of the sky?"],
    "answer": ["Paris", "4", "Blue"],
    "subject": ["geo", "math", None],
    "notes": ["a", "b", "c"],
}
MAP = {"input": "question", "reference": "answer", "cohort": "subject"}
EQUIVALENT = [
    {"id": 1, "input": "Capital of France?", "reference": "Paris", "cohort": "geo"},
    {"id": 2, "input": "2+2?", "reference": "4", "cohort": "math"},
    {"id": 3, "input": "Colour of the sky?", "reference": "Blue"},
]


def jsonl(records: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def table_jsonl(path: Path, *args: Any, **kwargs: Any) -> bytes:
    """The whole JSONL a table maps to (what a push sends, chunk by chunk)."""
    return b"".join(open_table(path, *args, **kwargs))


def write_csv(path: Path, columns: dict[str, list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in zip(*columns.values(), strict=True):
            writer.writerow(["" if cell is None else cell for cell in row])
    return path


def test_parquet_and_csv_are_the_version_of_the_equivalent_jsonl(tmp_path: Path) -> None:
    parquet = tmp_path / "qa.parquet"
    pq.write_table(pa.table(QA), parquet)
    csv_file = write_csv(tmp_path / "qa.csv", QA)
    expected = parse_dataset(jsonl(EQUIVALENT))
    for path in (parquet, csv_file):
        table = open_table(path, MAP, {"domain": "out"})
        assert table.ignored_columns == ["notes"]
        parsed = parse_dataset(b"".join(table))
        assert (
            parsed.canonical
            == parse_dataset(jsonl([{**r, "domain": "out"} for r in EQUIVALENT])).canonical
        )
        assert parsed.counts.n_examples == 3
    # without a fixed domain: the digest of the JSONL as written
    assert parse_dataset(table_jsonl(parquet, MAP)).digest == expected.digest
    # column names that are field names need no map
    named = tmp_path / "named.parquet"
    pq.write_table(pa.table({"input": QA["question"], "reference": QA["answer"]}), named)
    plain = [{k: v for k, v in r.items() if k != "cohort"} for r in EQUIVALENT]
    assert parse_dataset(table_jsonl(named)).digest == parse_dataset(jsonl(plain)).digest


def test_native_lists_structs_and_integers(tmp_path: Path) -> None:
    chat = [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Capital of Peru?"}]
    records = [
        {"id": "a", "messages": chat, "answers": ["Lima"], "expect": "comply"},
        {"id": "b", "input": "2+2?", "choices": ["3", "4"], "answer": 1, "target": " 4"},
    ]
    columns = {
        "id": ["a", "b"],
        "input": [None, "2+2?"],
        "messages": [chat, None],
        "answers": [["Lima"], None],
        "choices": [None, ["3", "4"]],
        "answer": pa.array([None, 1], type=pa.int64()),
        "target": [None, " 4"],
        "expect": ["comply", None],
    }
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table(columns), path)
    generation = {"system": "Be brief.", "max_new_tokens": 16}
    table = table_jsonl(path, generation=generation)
    expected = parse_dataset(jsonl([{"generation": generation}, *records]))
    assert parse_dataset(table).digest == expected.digest
    # the same as CSV: lists as JSON text, the index as digits
    text_columns = {
        k: [json.dumps(v) if isinstance(v, list) else v for v in vals]
        for k, vals in {**columns, "answer": [None, 1]}.items()
    }
    csv_table = table_jsonl(write_csv(tmp_path / "mixed.csv", text_columns), generation=generation)
    assert parse_dataset(csv_table).digest == expected.digest


@pytest.mark.parametrize(
    ("columns", "field_map", "message"),
    [
        ({"question": ["a", None, "c"]}, {"input": "question"}, "row 2: an example needs"),
        (
            {"input": ["a", "b"], "choices": [["x", "y"], ["x", "y"]], "answer": [0, 5]},
            {},
            'row 2: "answer" 5 is not an index of "choices" (0 to 1)',
        ),
        ({"input": ["a", "b", "c"], "id": ["x", "y", "x"]}, {}, 'row 3: duplicate id "x"'),
        ({"input": ["a", "b"], "answers": ["[1", "[]"]}, {}, 'row 1: "answers" is text that is'),
        ({"input": ["a", "b"], "domain": ["in", "sideways"]}, {}, 'row 2: "domain" must be'),
        ({"input": ["a"]}, {"prompt": "input"}, 'unknown record field "prompt"'),
        ({"input": ["a"]}, {"input": "question"}, '--map input=question: no column "question"'),
    ],
)
def test_bad_rows_are_refused_with_their_row(
    tmp_path: Path, columns: dict[str, list[object]], field_map: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(InvalidDataset) as caught:
        table_jsonl(path, field_map)
    assert message in caught.value.detail


def test_csv_ids_stay_text_and_bad_files_are_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ids.csv", {"id": ["007", "8"], "input": ["a", "b"]})
    keys = [e.id for e in parse_dataset(table_jsonl(path)).examples]
    assert keys == ["007", "8"]
    (tmp_path / "ragged.csv").write_text("input\na\nb,extra\n")
    with pytest.raises(InvalidDataset, match="row 2: more cells than the header's 1 columns"):
        table_jsonl(tmp_path / "ragged.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidDataset, match=r"broken\.parquet: not a readable Parquet file"):
        table_jsonl(tmp_path / "broken.parquet")


def test_rows_are_made_as_they_are_read_and_again_on_every_read(tmp_path: Path) -> None:
    n = 3000  # about 1.3 MB of JSONL: more than one chunk
    ids = [f"r{i}" for i in range(1, n + 1)]
    texts = [f"question {i} " + "x" * 400 for i in range(1, n + 1)]
    good = open_table(write_csv(tmp_path / "long.csv", {"id": ids, "input": texts}))
    chunks = list(good)
    assert len(chunks) == 2
    assert chunks == list(good)  # a retried request sends the same bytes from the start
    assert parse_dataset(b"".join(chunks)).counts.n_examples == n
    # the last row repeats an id: every row before it was made before it was read
    bad = open_table(write_csv(tmp_path / "dup.csv", {"id": [*ids, "r6"], "input": [*texts, "y"]}))
    lines = bad.lines()
    made = [next(lines) for _ in range(n)]
    assert json.loads(made[-1])["id"] == f"r{n}"
    with pytest.raises(
        InvalidDataset, match=rf'row {n + 1}: duplicate id "r6" \(first used on row 6\)'
    ):
        next(lines)


def test_an_undecodable_csv_row_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\xef\xbb\xbfinput\nfine\ncaf\xe9\n")  # a BOM, then a Latin-1 byte
    with pytest.raises(InvalidDataset, match="row 2: not valid UTF-8"):
        table_jsonl(path)
    (tmp_path / "header.csv").write_text("input\n")
    with pytest.raises(InvalidDataset, match=r"header\.csv: the table has no rows"):
        open_table(tmp_path / "header.csv")
