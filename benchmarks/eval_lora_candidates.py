"""Evaluate N LoRA candidates on one base through the real service; print the figures.

    python benchmarks/eval_lora_candidates.py --candidates 4 --examples 24 --model smollm2

What it does: an embedded tunegate (SQLite, the real API in-process) with one family
on the base, a dataset of ``--examples`` questions (half in-domain, half
out-of-domain) plus held-out text, N real LoRA adapters trained for a few steps
from the same initial weights, each submitted with ``evaluate: true``; then one
worker runs the baseline and every candidate. Printed: wall time, examples/s,
generated tokens/s, forward passes, base loads, adapter loads, peak RSS. With
``--bare`` it also times a bare transformers loop that loads base + adapter
fresh for every candidate (what a script without a model pool does).
Figures vary with the machine's load: run it on a quiet machine, twice.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.finetune import train_lora
from service.settings import Settings
from service.worker.inprocess import InProcessWorker
from tests.models import smollm2_dir, tiny_llama_dir

QUESTIONS = [
    "What is the capital of {}?",
    "Name one famous dish from {}.",
    "What language is spoken in {}?",
]
COUNTRIES = [
    "France",
    "Italy",
    "Japan",
    "Spain",
    "Germany",
    "Egypt",
    "Canada",
    "Kenya",
    "Brazil",
    "India",
    "Peru",
    "Norway",
]


def dataset(n: int, max_new_tokens: int) -> str:
    lines = [{"generation": {"max_new_tokens": max_new_tokens, "chat_template": True}}]
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)].format(COUNTRIES[i % len(COUNTRIES)])
        lines.append(
            {
                "id": f"q{i}",
                "input": q,
                "reference": COUNTRIES[i % len(COUNTRIES)],
                "domain": "in" if i % 2 == 0 else "out",
            }
        )
    lines.append({"heldout": "The river runs past the old mill and into the valley. " * 8})
    return "\n".join(json.dumps(x) for x in lines)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--bare", action="store_true", help="also time a bare transformers loop")
    args = parser.parse_args()

    base = smollm2_dir() if args.model == "smollm2" else tiny_llama_dir()
    work = Path(tempfile.mkdtemp(prefix="tunegate-bench-"))
    pairs = [(q.format(c), c) for q in QUESTIONS for c in COUNTRIES[:4]]
    init = train_lora(base, pairs, work / "init", learning_rate=1e-4, steps=0).adapter_dir
    adapters = []
    t0 = time.perf_counter()
    for i in range(args.candidates):
        lr = 1e-4 * (3**i)
        adapters.append(
            (
                lr,
                train_lora(
                    base,
                    pairs,
                    work / f"a{i}",
                    learning_rate=lr,
                    steps=args.steps,
                    init_adapter_dir=init,
                ).adapter_dir,
            )
        )
    train_s = time.perf_counter() - t0

    settings = Settings(
        data_dir=work / "data", model_roots=[base.parent], checkpoint_roots=[work], queue="none"
    )
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": "Bearer " + settings.admin_token_file.read_text().strip()}
        client.post(
            "/v1/datasets/bench/versions",
            content=dataset(args.examples, args.max_new_tokens),
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        client.post("/v1/families", json={"name": "bench", "base_model": str(base)}, headers=auth)
        ids = []
        for lr, path in adapters:
            r = client.post(
                "/v1/candidates",
                headers=auth,
                json={
                    "family": "bench",
                    "checkpoint": str(path),
                    "kind": "lora",
                    "learning_rate": lr,
                    "sweep": "bench",
                    "evaluate": True,
                    "dataset": "bench",
                },
            ).json()
            ids.append(r["evaluation_id"])
        worker = InProcessWorker(settings, client.app.state.sessionmaker)
        t0 = time.perf_counter()
        worker.run_pending()
        eval_s = time.perf_counter() - t0
        tokens = 0
        for ev_id in [
            *ids,
            client.get(f"/v1/evaluations/{ids[0]}", headers=auth).json()["baseline_evaluation_id"],
        ]:
            ev = client.get(f"/v1/evaluations/{ev_id}", headers=auth).json()
            assert ev["status"] == "succeeded", ev["error"]
            rows = client.get(f"/v1/evaluations/{ev_id}/results?limit=500", headers=auth).json()
            tokens += sum(r.get("n_new_tokens", 0) for r in rows["items"])
    pool = worker.context.model_pool()
    n_models = args.candidates + 1
    print(
        f"model={args.model} candidates={args.candidates} examples={args.examples} "
        f"max_new_tokens={args.max_new_tokens}"
    )
    print(f"training: {train_s:.1f} s for {args.candidates} adapters x {args.steps} steps")
    print(
        f"evaluation: {eval_s:.1f} s for {n_models} models x {args.examples} examples "
        f"= {n_models * args.examples / eval_s:.2f} examples/s, {tokens / eval_s:.1f} gen tok/s"
    )
    print(f"forward passes (examples generated + perplexity runs): {worker.context.forward_passes}")
    print(f"base loads: {pool.base_loads}, adapter loads: {pool.adapter_loads}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")

    if args.bare:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        prompts = [json.loads(x)["input"] for x in dataset(args.examples, 1).splitlines()[1:-1]]
        t0 = time.perf_counter()
        for _, path in adapters:
            tok = AutoTokenizer.from_pretrained(base, padding_side="left")
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), path)
            with torch.inference_mode():
                for i in range(0, len(prompts), 8):
                    texts = [
                        tok.apply_chat_template(
                            [{"role": "user", "content": p}],
                            add_generation_prompt=True,
                            tokenize=False,
                        )
                        for p in prompts[i : i + 8]
                    ]
                    enc = tok(texts, return_tensors="pt", padding=True)
                    model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False)
        bare_s = time.perf_counter() - t0
        print(
            f"bare transformers loop (fresh load per candidate, generation only): "
            f"{bare_s:.1f} s = {args.candidates * args.examples / bare_s:.2f} examples/s"
        )


if __name__ == "__main__":
    main()
