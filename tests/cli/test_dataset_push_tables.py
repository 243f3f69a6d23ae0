"""``tunegate dataset push`` of a Parquet file with a field map: the same version as the
equivalent JSONL; a bad row exits 2 naming the row."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"input": ["ok", "fine", None]}), bad)
    refused = run_cli("dataset", "push", "tables", str(bad), env=live_server.env())
    assert refused.returncode == 2
    assert "row 3: an example needs exactly one of" in " ".join(refused.stderr.split())
