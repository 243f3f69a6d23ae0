"""Held-out perplexity of the real SmolLM2: tunegate's rolling_perplexity vs lm-eval 0.4.13.

Runs both on the same local model folder and the same texts, and prints each side's word
perplexity, their relative difference and the time each took (model loading excluded)::

    python benchmarks/perplexity_vs_lm_eval.py                  # built-in texts, 8192 context
    python benchmarks/perplexity_vs_lm_eval.py --max-length 256 # force several rolling windows
    python benchmarks/perplexity_vs_lm_eval.py --texts heldout.txt  # paragraphs = texts

Needs ``pip install -e '.[reference]'`` (lm-eval 0.4.13). Offline: the default texts are
docstrings of standard-library modules, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_MODULES = ("argparse", "json", "textwrap", "csv", "heapq", "bisect", "fractions", "abc")


def default_texts() -> list[str]:
    """English prose (with a little code) that ships with every Python install."""
    texts = [importlib.import_module(name).__doc__ or "" for name in DEFAULT_MODULES]
    return [text.strip() for text in texts if text.strip()]


def read_texts(path: Path) -> list[str]:
    """Paragraphs of a text file, split on blank lines."""
    return [part.strip() for part in path.read_text(encoding="utf-8").split("\n\n") if part.strip()]


def main() -> None:
    """Run both implementations and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--models-dir", type=Path, default=Path.home() / ".cache/tunegate-tests/models"
    )
    parser.add_argument("--texts", type=Path, help="a UTF-8 text file; paragraphs are the texts")
    parser.add_argument("--max-length", type=int, default=None, help="context window (tokens)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluators.perplexity import count_words, rolling_perplexity
    from service.engine.builtin import SMOLLM2, ensure_builtin

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    folder = ensure_builtin(SMOLLM2, args.models_dir)
    texts = read_texts(args.texts) if args.texts else default_texts()
    n_words = sum(count_words(text) for text in texts)

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    start = time.perf_counter()
    ours = rolling_perplexity(
        model, tokenizer, texts, max_length=args.max_length, batch_size=args.batch_size
    )
    ours_s = time.perf_counter() - start

    lm = HFLM(
        pretrained=str(folder),
        device="cpu",
        dtype="float32",
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=i)
        for i, text in enumerate(texts)
    ]
    start = time.perf_counter()
    loglikelihoods = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    theirs_s = time.perf_counter() - start
    theirs = math.exp(-sum(loglikelihoods) / n_words)

    print(f"model          {folder}")
    print(f"texts          {len(texts)} ({n_words} words, {ours.n_tokens} tokens)")
    print(f"context        {args.max_length or 'model default'} tokens, batch {args.batch_size}")
    print(f"tunegate       word_perplexity={ours.word_perplexity:.6f}  {ours_s:.2f} s")
    print(f"lm-eval 0.4.13 word_perplexity={theirs:.6f}  {theirs_s:.2f} s")
    print(f"relative diff  {abs(ours.word_perplexity - theirs) / theirs:.3e}")
    print(
        f"token_perplexity={ours.token_perplexity:.4f} byte_perplexity={ours.byte_perplexity:.4f}"
    )


if __name__ == "__main__":
    main()
