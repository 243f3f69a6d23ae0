"""What a worker does as it starts, before any job: import the model libraries.

Importing transformers' model machinery, PEFT and sentence-transformers takes seconds of
CPU (more on a busy machine). A worker that imported them lazily made its first
evaluation pay for them — with a fresh server, the first sweep submitted to it. A
background thread imports them while the worker waits for work; nothing is loaded (no
weights, no memory beyond the modules), and a job that starts meanwhile simply waits for
the import it needs, as it would have anyway.
"""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger("tunegate.worker")

#: Modules (and attributes of transformers' lazy modules) a job imports on its way to a
#: loaded model, a generation and a score.
MODULES = ("torch", "transformers", "peft", "sentence_transformers")
TRANSFORMERS_NAMES = ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "GenerationConfig")


def import_model_libraries() -> None:
    """Import what a job needs; a library that fails to import is left to the job to report."""
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:  # the job raises it with context if it needs the library
            log.debug("warm-up could not import %s", name, exc_info=True)
            continue
        if name == "transformers":
            for attribute in TRANSFORMERS_NAMES:
                getattr(module, attribute, None)


def start_warm_up() -> threading.Thread:
    """Import the model libraries in a daemon thread; returns the thread."""
    thread = threading.Thread(target=import_model_libraries, name="tunegate-warm-up", daemon=True)
    thread.start()
    return thread
