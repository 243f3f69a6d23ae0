"""A large CSV or Parquet table pushed with ``tunegate dataset push``: the client's peak
RSS and wall time.

    PYTHONPATH=. python benchmarks/faults/table_push.py [--size-mb 200] [--format parquet] \\
        [--client before=/path/to/an/older/checkout] [--client after=.]

Writes a CSV of about ``--size-mb`` MiB (about 1 KB a row: an id, a question, a context
paragraph, an answer, a subject, a split; ``--format parquet``: then converted to
Parquet), starts an embedded server (SQLite, no worker) and pushes the table once per
``--client``: the real CLI of that checkout, in a subprocess, with a field map and a
system prompt. The client's peak RSS is the kernel's high-water mark (``VmHWM``, read as
the CLI exits), beside the peak of pushing a one-row table (what starting the CLI and
its table reader costs). Every client must get the same version: the
first push creates it (201), the others read, hash and find it (200, the same digest).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.cli.embedded import EmbeddedServer
from service.settings import Settings

_WORDS = (
    "the parcel left the depot on monday and is expected within three working days unless "
    "the carrier reports a delay at the regional hub where customs checks may apply to "
).split()
MAPS = ("input=question", "context=context", "reference=answer", "cohort=subject", "domain=split")


# The CLI's entry point, writing its process's peak RSS (VmHWM: this program's, from exec
# on; rusage's ru_maxrss would count the forking parent's pages too) to argv[1] at exit.
_CLI = """
import atexit, sys
from pathlib import Path
peak = Path(sys.argv.pop(1))
status = Path("/proc/self/status")
atexit.register(lambda: peak.write_text(next(
    line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))))
from service.cli.main import main
sys.argv[0] = "tunegate"
main()
"""


def _text(i: int, words: int) -> str:
    return " ".join(_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(words))


def write_csv(path: Path, size: int) -> int:
    """About ``size`` bytes of CSV; returns the number of rows."""
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "question", "context", "answer", "subject", "split"])
        while not rows or handle.tell() < size:
            rows += 1
            writer.writerow(
                [
                    f"ex-{rows}",
                    f"Where is order {rows}? " + _text(rows, 20),
                    _text(rows + 1, 110),
                    f"Order {rows} is in transit.",
                    f"c{rows % 17}",
                    "out" if rows % 5 == 0 else "in",
                ]
            )
    return rows


def to_parquet(table: Path) -> Path:
    """The CSV as a Parquet file beside it (every column text, as in the CSV)."""
    from pyarrow import csv as arrow_csv
    from pyarrow import parquet

    target = table.with_suffix(".parquet")
    parquet.write_table(arrow_csv.read_csv(table), target)
    table.unlink()
    return target


def push(
    source: Path, table: Path, server: EmbeddedServer
) -> tuple[dict[str, object], float, float]:
    """Push ``table`` (as the dataset named like the file) with the CLI of the checkout
    ``source``: (answer, seconds, peak RSS MB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEGATE_")}
    env |= {"PYTHONPATH": str(source), "TUNEGATE_URL": server.url}
    env |= {"TUNEGATE_TOKEN": server.admin_token}
    args = ["dataset", "push", table.stem, str(table), "--json", "--system", "Be brief."]
    args += [f"--map={m}" for m in MAPS]
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CLI, str(peak), *args],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{source}: exit {done.returncode}: {done.stderr[-2000:]}")
        answer: dict[str, object] = json.loads(done.stdout)
        kib = int(peak.read_text().split()[1])
    return answer, seconds, kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument(
        "--format", choices=("csv", "parquet"), default="csv", help="parquet: the CSV converted"
    )
    parser.add_argument(
        "--client", action="append", default=[], help="LABEL=CHECKOUT (default: this=.)"
    )
    args = parser.parse_args()
    clients = [c.partition("=")[::2] for c in args.client or ["this=."]]
    with tempfile.TemporaryDirectory(prefix="tunegate-table-push-") as tmp:
        root = Path(tmp)
        table, tiny = root / "big.csv", root / "tiny.csv"
        rows = write_csv(table, args.size_mb * 1024**2)
        write_csv(tiny, 1)
        if args.format == "parquet":
            table, tiny = to_parquet(table), to_parquet(tiny)
        size = table.stat().st_size / 1024**2
        print(f"{table.name}: {size:.1f} MiB, {rows:,} rows", flush=True)
        settings = Settings(
            data_dir=root / "data", database_url=f"sqlite:///{root / 'tunegate.db'}", queue="none"
        )
        digests = set()
        with EmbeddedServer(settings) as server:
            for label, checkout in clients:
                source = Path(checkout).resolve()
                _, _, floor = push(source, tiny, server)
                answer, seconds, peak = push(source, table, server)
                digests.add(answer["digest"])
                print(
                    f"{label} ({source}): version {answer['version']} "
                    f"({'created' if answer['created'] else 'found'}, "
                    f"{str(answer['digest'])[:12]}), {answer['n_examples']:,} examples in "
                    f"{seconds:.1f} s; client peak RSS {peak:.0f} MB "
                    f"(a one-row table: {floor:.0f} MB)",
                    flush=True,
                )
        if len(digests) != 1:
            raise SystemExit(f"the clients pushed different content: {sorted(map(str, digests))}")


if __name__ == "__main__":
    main()
