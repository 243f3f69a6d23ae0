"""Datasets as they come: Parquet and CSV tables mapped to the dataset JSONL format.

A table holds examples, one a row. A *field map* says which column feeds which record field
(``{"input": "question", "reference": "answer"}``); without one, the columns named like
record fields (``input``, ``messages``, ``reference``, ...) are used. Fixed values
(``{"domain": "out"}``) apply to every row. The result is the JSONL the table maps to:
its canonical form and digest are exactly those of the same records pushed as JSONL, so
the same content as JSONL and as Parquet is one version.

Reading: Parquet with pyarrow (the ``parquet`` extra), a batch of rows at a time; CSV with
the standard library's ``csv`` module, a row at a time, so every cell is text (an ``id``
like ``007`` stays ``007``). Per cell: empty or null means absent; list and object fields
(``messages``, ``answers``, ``choices``, ``json_schema``) take Parquet lists/structs or a
JSON text; ``answer`` takes an integer or its digits. A row without an ``id`` gets its row
number (1-based, the header not counted).

:func:`open_table` checks what can be checked up front (the file is readable and not
empty, the field map names real columns, the generation settings) and returns a
:class:`TableLines`: the JSONL, made as it is iterated, so a table of any size is
pushed in the memory of one batch. Every row is validated like a JSONL line as it is
made (ids kept on disk, :mod:`service.dataset_ids`); a bad one ends the iteration with
:class:`InvalidDataset` naming its row.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.dataset_format import ExampleRecord, GenerationConfig, RecordReader
from service.dataset_ids import IdLedger
from service.errors import InvalidDataset
from service.jsontypes import JSONObject

TABLE_SUFFIXES = (".parquet", ".csv")
FIELDS = tuple(name for name in ExampleRecord.model_fields)
_STRUCTURED = frozenset({"messages", "answers", "choices", "json_schema"})
_PARQUET_BATCH = 1024  # rows per Parquet batch: a batch is what the reader holds
_CHUNK = 1024**2  # bytes of JSONL per chunk handed to the request body
_BOM = b"\xef\xbb\xbf"


def _row(number: int) -> str:
    return f"row {number}"


@dataclass(frozen=True)
class _CsvTable:
    """A CSV file, read a row at a time (from the start on every :meth:`rows`)."""

    path: Path
    columns: list[str]

    @classmethod
    def open(cls, path: Path) -> _CsvTable:
        rows = cls(path, []).rows(())
        try:
            header = next(rows, None)  # the first row proves the table is not empty
        finally:
            rows.close()
        if header is None:
            raise InvalidDataset(f"{path.name}: the table has no rows")
        return cls(path, list(header))

    def rows(self, wanted: Collection[str]) -> Generator[JSONObject]:
        """The rows as dicts (column → text); ``wanted`` is a hint only."""
        read = 0  # rows read so far

        def text(handle: Iterable[bytes]) -> Iterator[str]:
            # split at b"\n" (never inside a UTF-8 character) and decoded a line at a time:
            # an undecodable byte is reported in the row that holds it
            for number, raw in enumerate(handle):
                try:
                    yield (raw.removeprefix(_BOM) if number == 0 else raw).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidDataset(f"{_row(read + 1)}: not valid UTF-8") from exc

        with self.path.open("rb") as handle:
            reader = csv.DictReader(text(handle))
            try:
                for row in reader:
                    read += 1
                    if None in row:  # more cells than header columns
                        raise InvalidDataset(
                            f"{_row(read)}: more cells than the header's "
                            f"{len(reader.fieldnames or [])} columns"
                        )
                    yield dict(row)
            except csv.Error as exc:
                raise InvalidDataset(f"{_row(read + 1)}: not readable as CSV: {exc}") from exc


@dataclass(frozen=True)
class _ParquetTable:
    """A Parquet file, read a batch of rows at a time (only the wanted columns)."""

    path: Path
    columns: list[str]

    @classmethod
    def open(cls, path: Path) -> _ParquetTable:
        pq = _pyarrow_parquet()
        try:
            with pq.ParquetFile(path) as parquet:
                n_rows, columns = parquet.metadata.num_rows, parquet.schema_arrow.names
        except Exception as exc:  # pyarrow raises many kinds for a broken file
            raise InvalidDataset(f"{path.name}: not a readable Parquet file: {exc}") from exc
        if not n_rows:
            raise InvalidDataset(f"{path.name}: the table has no rows")
        return cls(path, list(columns))

    def rows(self, wanted: Collection[str]) -> Iterator[JSONObject]:
        pq = _pyarrow_parquet()
        with pq.ParquetFile(self.path) as parquet:
            batches = parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=list(wanted))
            while True:
                try:
                    batch = next(batches, None)
                except Exception as exc:  # a page that does not decode
                    raise InvalidDataset(
                        f"{self.path.name}: not a readable Parquet file: {exc}"
                    ) from exc
                if batch is None:
                    return
                yield from batch.to_pylist()


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InvalidDataset(
            "reading Parquet needs pyarrow: pip install 'tunegate[parquet]'"
        ) from exc
    return pq


def _open_source(path: Path) -> _CsvTable | _ParquetTable:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _CsvTable.open(path)
        if suffix == ".parquet":
            return _ParquetTable.open(path)
    except OSError as exc:
        raise InvalidDataset(f"{path.name}: {exc.strerror}") from exc
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
class TableLines:
    """A table mapped to dataset JSONL, made as it is iterated.

    Iterating yields the JSONL in chunks of about 1 MiB (each line ending in ``\\n``),
    from the file's start every time (a retried request sends it again). Each row is
    checked as it is made; a bad one raises :class:`InvalidDataset` naming its row
    (1-based, header not counted) — after the rows before it were yielded.
    """

    source: _CsvTable | _ParquetTable
    mapping: dict[str, str]
    fixed: dict[str, Any]
    generation_line: str | None
    ignored_columns: list[str]

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        size = 0
        for line in self.lines():
            data = f"{line}\n".encode()
            pending.append(data)
            size += len(data)
            if size >= _CHUNK:
                yield b"".join(pending)
                pending.clear()
                size = 0
        if pending:
            yield b"".join(pending)

    def lines(self) -> Iterator[str]:
        """The JSONL lines, the generation record first when given; each row validated."""
        with IdLedger.scratch() as ids:
            reader = RecordReader(ids.claim, where=_row)
            if self.generation_line is not None:
                reader.read(0, self.generation_line)  # checked by open_table: never refused
                yield self.generation_line
            wanted = sorted(set(self.mapping.values()))
            for number, row in enumerate(self.source.rows(wanted), start=1):
                line = self._line(number, row)
                reader.read(number, line)
                yield line
            reader.finish()

    def _line(self, number: int, row: JSONObject) -> str:
        where = _row(number)
        record = {field: _cell(field, value, where) for field, value in self.fixed.items()}
        for field, column in self.mapping.items():
            value = row.get(column)
            if not _absent(value):
                record[field] = _cell(field, value, where)
        record.setdefault("id", number)
        try:
            return json.dumps(record, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidDataset(f"{where}: a cell is not text, a number or a list: {exc}") from exc


def open_table(
    path: Path,
    field_map: Mapping[str, str] | None = None,
    fixed: Mapping[str, Any] | None = None,
    generation: Mapping[str, Any] | None = None,
) -> TableLines:
    """The dataset JSONL a Parquet or CSV table maps to, to be read as it is sent.

    ``fixed``: values for every row (``{"domain": "out"}``); ``generation``: the generation
    record's fields (``system``, ``max_new_tokens``, ``chat_template``), its first line when
    given. Raises :class:`InvalidDataset` for an unreadable or empty file, a field map
    that does not fit the columns, bad generation settings; a bad row is refused while
    the lines are read (:class:`TableLines`).
    """
    source = _open_source(path)
    fixed = dict(fixed or {})
    mapping = resolve_map(source.columns, field_map or {}, fixed)
    generation_line = None
    if generation:
        try:
            config = GenerationConfig.model_validate(dict(generation))
        except ValidationError as exc:
            raise InvalidDataset(f"generation settings: {exc.errors()[0]['msg']}") from exc
        if config.system is not None and not config.chat_template:
            raise InvalidDataset("a system prompt needs the chat template")
        generation_line = json.dumps({"generation": config.model_dump(exclude_none=True)})
    used = set(mapping.values())
    ignored = [c for c in source.columns if c not in used]
    return TableLines(source, mapping, fixed, generation_line, ignored)
