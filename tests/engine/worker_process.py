"""A worker in its own process, for crash tests: runs pending evaluations from the
environment's settings, pausing after each chunk so a test can SIGKILL it mid-run."""

from __future__ import annotations

import os
import sys
import time

from service.db.session import make_engine, make_sessionmaker
from service.settings import Settings
from service.worker.inprocess import InProcessWorker


def main() -> None:
    settings = Settings()
    pause = float(os.environ.get("TEST_PAUSE_AFTER_CHUNK", "0"))
    engine = make_engine(settings.sqlalchemy_url)
    worker = InProcessWorker(settings, make_sessionmaker(engine))

    def after_chunk(evaluation_id: int, done: int) -> None:
        print(f"chunk {evaluation_id} {done}", flush=True)
        time.sleep(pause)

    worker.context.after_chunk = after_chunk
    ran = worker.run_pending()
    print(f"ran {ran}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
