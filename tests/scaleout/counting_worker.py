"""``tunegate worker`` with a forward hook on the model: every generation's prompt pass
appends its number of examples to ``$TEST_FORWARD_COUNT_FILE``, so a crash test can see
what this worker process really generated (not what the job says it did)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.forward_count import counting_forward_passes


def main() -> None:
    path = Path(os.environ["TEST_FORWARD_COUNT_FILE"])

    def note(n_examples: int) -> None:
        with path.open("a") as out:
            out.write(f"{n_examples}\n")

    from service.cli.main import main as tunegate

    with counting_forward_passes(on_generate=note):
        sys.argv = ["tunegate", *sys.argv[1:]]
        tunegate()


if __name__ == "__main__":
    main()
