"""Datasets as they come: Parquet and CSV tables mapped to the dataset JSONL format.

A table holds examples, one a row. A *field map* says which column feeds which record field
(``{"input": "question", "reference": "answer"}``); without one, the columns named like
record fields (``input``, ``messages``, ``reference``, ...) are used. Fixed values
(``{"domain": "out"}``) apply to every row. The result is the JSONL the table maps to:
its canonical form and digest are exactly those of the same records pushed as JSONL, so
the same content as JSONL and as Parquet is one version.

Reading: Parquet with pyarrow (the ``parquet`` extra); CSV with the standard library's
``csv`` module, so every cell is text (an ``id`` like ``007`` stays ``007``). Per cell:
empty or null means absent; list and object fields (``messages``, ``answers``,
``choices``, ``json_schema``) take Parquet lists/structs or a JSON text; ``answer`` takes
an integer or its digits. A row without an ``id`` gets its row number (1-based, the
header not counted). Every row is validated like a JSONL line; a bad one is refused with
:class:`InvalidDataset` naming its row.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.dataset_format import ExampleRecord, GenerationConfig, parse_dataset
from service.errors import InvalidDataset
from service.jsontypes import JSONObject

TABLE_SUFFIXES = (".parquet", ".csv")
FIELDS = tuple(name for name in ExampleRecord.model_fields)
_STRUCTURED = frozenset({"messages", "answers", "choices", "json_schema"})


def _row(number: int) -> str:
    return f"row {number}"


def read_rows(path: Path) -> list[JSONObject]:
    """The table's rows as dicts (column → cell). Raises :class:`InvalidDataset`."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidDataset(f"{path.name}: not valid UTF-8") from exc
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows: list[JSONObject] = []
        for row in reader:
            if None in row:  # more cells than header columns
                raise InvalidDataset(
                    f"row {len(rows) + 1}: more cells than the header's "
                    f"{len(reader.fieldnames or [])} columns"
                )
            rows.append(dict(row))
        return rows
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise InvalidDataset(
                "reading Parquet needs pyarrow: pip install 'tunegate[parquet]'"
            ) from exc
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises many kinds for a broken file
            raise InvalidDataset(f"{path.name}: not a readable Parquet file: {exc}") from exc
        return list(table.to_pylist())
    raise InvalidDataset(f"{path.name}: a table is .parquet or .csv, not {suffix or 'no suffix'}")


def _absent(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _cell(field: str, value: Any, where: str) -> Any:
    """A cell as the record field wants it (JSON text decoded, integer digits read)."""
    if field in _STRUCTURED and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidDataset(
                f'{where}: "{field}" is text that is not JSON ({exc.msg}); give a JSON '
                f"{'object' if field == 'json_schema' else 'array'} or a Parquet list"
            ) from exc
    if field == "answer" and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if field == "answer" and isinstance(value, float) and value.is_integer():
        return int(value)  # an integer column with nulls, read as floats
    if field == "messages" and isinstance(value, list):
        # a Parquet struct list may carry null struct members: drop them like any absent field
        return [_without_nulls(m) for m in value]
    return value


def _without_nulls(item: Any) -> Any:
    return {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item


def resolve_map(
    columns: Iterable[str], field_map: Mapping[str, str], fixed: Mapping[str, Any]
) -> dict[str, str]:
    """Field → column. An explicit map is used as given (only those columns); without
    one, the columns named like record fields. Raises :class:`InvalidDataset`."""
    names = list(columns)
    for field in [*field_map, *fixed]:
        if field not in FIELDS:
            known = ", ".join(FIELDS)
            raise InvalidDataset(f'unknown record field "{field}" (known: {known})')
    both = set(field_map) & set(fixed)
    if both:
        raise InvalidDataset(f"{', '.join(sorted(both))}: both mapped to a column and fixed")
    for field, column in field_map.items():
        if column not in names:
            raise InvalidDataset(
                f'--map {field}={column}: no column "{column}" (columns: {", ".join(names)})'
            )
    if field_map:
        return dict(field_map)
    return {name: name for name in names if name in FIELDS and name not in fixed}


@dataclass(frozen=True)
class TableDataset:
    """A table mapped to dataset JSONL."""

    body: bytes
    n_rows: int
    ignored_columns: list[str]


def table_jsonl(
    path: Path,
    field_map: Mapping[str, str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    generation: Mapping[str, Any] | None = None,
) -> TableDataset:
    """The dataset JSONL a Parquet or CSV table maps to, validated row by row.

    ``fixed``: values for every row (``{"domain": "out"}``); ``generation``: the generation
    record's fields (``system``, ``max_new_tokens``, ``chat_template``), its first line when
    given. Raises :class:`InvalidDataset` naming the bad row (1-based, header not counted).
    """
    rows = read_rows(path)
    if not rows:
        raise InvalidDataset(f"{path.name}: the table has no rows")
    fixed = dict(fixed or {})
    columns = list(rows[0].keys())
    mapping = resolve_map(columns, field_map or {}, fixed)
    lines: list[str] = []
    if generation:
        try:
            config = GenerationConfig.model_validate(dict(generation))
        except ValidationError as exc:
            raise InvalidDataset(f"generation settings: {exc.errors()[0]['msg']}") from exc
        if config.system is not None and not config.chat_template:
            raise InvalidDataset("a system prompt needs the chat template")
        lines.append(json.dumps({"generation": config.model_dump(exclude_none=True)}))
    for number, row in enumerate(rows, start=1):
        where = _row(number)
        record = {field: _cell(field, value, where) for field, value in fixed.items()}
        for field, column in mapping.items():
            value = row.get(column)
            if not _absent(value):
                record[field] = _cell(field, value, where)
        record.setdefault("id", number)
        try:
            lines.append(json.dumps(record, ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            raise InvalidDataset(f"{where}: a cell is not text, a number or a list: {exc}") from exc
    body = "\n".join(lines).encode("utf-8")
    offset = 1 if generation else 0
    parse_dataset(body, where=lambda n: _row(n - offset))  # every row checked here
    used = set(mapping.values())
    return TableDataset(body, len(rows), [c for c in columns if c not in used])
