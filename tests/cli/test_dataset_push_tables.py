"""``tunegate dataset push`` of a Parquet or CSV file with a field map: the same version as
the equivalent JSONL; a bad row exits 2 naming the row, even after part of the table was sent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.cli.client import ClientError, TunegateClient
from tests.cli.conftest import LiveServer, run_cli


def test_parquet_push_is_the_jsonl_version(live_server: LiveServer, tmp_path: Path) -> None:
    parquet = tmp_path / "support.parquet"
    pq.write_table(
        pa.table(
            {
                "question": ["Where is my parcel?", "What is 2+2?"],
                "answer": ["In transit.", "4"],
                "subject": ["shipping", "math"],
                "split": ["in", "out"],
            }
        ),
        parquet,
    )
    maps = ["input=question", "reference=answer", "cohort=subject", "domain=split"]
    args = ["dataset", "push", "tables", str(parquet), "--json", "--system", "Be brief."]
    result = run_cli(*args, *[f"--map={m}" for m in maps], env=live_server.env())
    assert result.returncode == 0, result.stderr
    pushed = json.loads(result.stdout)
    assert (pushed["version"], pushed["n_in_domain"], pushed["n_out_domain"]) == (1, 1, 1)

    records = [
        {"generation": {"system": "Be brief."}},
        {"id": 1, "input": "Where is my parcel?", "reference": "In transit.", "cohort": "shipping"},
        {"id": 2, "input": "What is 2+2?", "reference": "4", "cohort": "math", "domain": "out"},
    ]
    equivalent = tmp_path / "support.jsonl"
    equivalent.write_text("\n".join(json.dumps(r) for r in records))
    again = run_cli("dataset", "push", "tables", str(equivalent), "--json", env=live_server.env())
    assert again.returncode == 0, again.stderr
    same = json.loads(again.stdout)
    assert (same["version"], same["digest"], same["created"]) == (1, pushed["digest"], False)

    as_csv = tmp_path / "support.csv"
    with as_csv.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [
                ["question", "answer", "subject", "split"],
                ["Where is my parcel?", "In transit.", "shipping", "in"],
                ["What is 2+2?", "4", "math", "out"],
            ]
        )
    args = ["dataset", "push", "tables", str(as_csv), "--json", "--system", "Be brief."]
    from_csv = run_cli(*args, *[f"--map={m}" for m in maps], env=live_server.env())
    assert from_csv.returncode == 0, from_csv.stderr
    again = json.loads(from_csv.stdout)
    assert (again["version"], again["digest"], again["created"]) == (1, pushed["digest"], False)

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"input": ["ok", "fine", None]}), bad)
    refused = run_cli("dataset", "push", "tables", str(bad), env=live_server.env())
    assert refused.returncode == 2
    assert "row 3: an example needs exactly one of" in " ".join(refused.stderr.split())


def test_a_bad_row_after_the_first_megabyte_stops_the_push(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 3000  # about 1.3 MB of JSONL: the first chunk is sent before the bad row is read
    table = tmp_path / "long.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "answer", "choices"])
        writer.writerows([f"question {i} " + "x" * 400, "0", '["a", "b"]'] for i in range(n))
        writer.writerow(["last", "7", '["a", "b"]'])
    refused = run_cli("dataset", "push", "long", str(table), env=live_server.env())
    assert refused.returncode == 2
    assert f'row {n + 1}: "answer" 7 is not an index of "choices"' in refused.stderr
    with TunegateClient(live_server.url, live_server.token) as client:
        with pytest.raises(ClientError) as caught:
            client.get_dataset_version("long")
    assert caught.value.status == 404  # nothing of the cut-off push was stored
    # the server took the cut-off body for a refused push, not for an internal error
    assert not [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
