"""A worker in its own process, for crash tests: runs pending evaluations from the
environment's settings and pauses inside one phase so a test can SIGKILL it there.

``TEST_KILL_AT`` names the phase: ``generation`` (after a chunk of outputs and scores is
committed), ``scoring`` (after a chunk of scores of stored outputs is committed) or
``aggregates`` (aggregates flushed, their unit of work not committed). On reaching it the
worker prints ``<phase> <evaluation id> <count>`` and sleeps ``TEST_PAUSE`` seconds.
"""

from __future__ import annotations

import os
import sys
import time

from service.db.session import make_engine, make_sessionmaker
from service.settings import Settings
from service.worker.inprocess import InProcessWorker


def main() -> None:
    settings = Settings()
    phase = os.environ.get("TEST_KILL_AT", "generation")
    pause = float(os.environ.get("TEST_PAUSE", "600"))
    engine = make_engine(settings.sqlalchemy_url)
    worker = InProcessWorker(settings, make_sessionmaker(engine))

    def reached(evaluation_id: int, count: int) -> None:
        print(f"{phase} {evaluation_id} {count}", flush=True)
        time.sleep(pause)

    hook = {
        "generation": "after_chunk",
        "scoring": "after_score_chunk",
        "aggregates": "writing_aggregates",
    }[phase]
    setattr(worker.context, hook, reached)
    ran = worker.run_pending()
    print(f"ran {ran}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
