"""tunegate end to end vs a hand-written loop vs lm-eval, on the same prompts and adapters.

    python benchmarks/sweep_vs_loop.py                      # CPU, float32, everything
    python benchmarks/sweep_vs_loop.py --device cuda --dtype bfloat16
    python benchmarks/sweep_vs_loop.py --skip-lm-eval --loop-batches 32

The workload (issue 13): SmolLM2-135M-Instruct plus ``--candidates`` real LoRA adapters
(trained a few steps here, cached in ``--work``), ``--prompts`` questions with references,
greedy, ``--max-new-tokens`` new tokens, chat template, scored for similarity with the
reference; 4 held-out texts for perplexity. Each side runs in its own process(es):

- **tunegate**: ``tunegate serve`` (SQLite, in-process worker), the dataset and family
  pushed with the CLI, then one ``tunegate submit --wait`` per adapter, all at once (CLI →
  HTTP → queue → database → worker → verdicts). Timed from the first submit to the last
  verdict; peak RSS of the server process. Run three times: the sweep, the same sweep from
  one ``tunegate submit A B C D --lr .. --lr ..`` process (how a sweep script would submit
  it), and one candidate alone (for the sweep's RSS ratio). Then one ``tunegate eval
  rescore ID ...`` adds an evaluator to every evaluation (timed), and an in-process check
  on the same database counts the forward passes of a rescore with a forward hook on every
  causal LM (expected: 0).
- **loop**: one process, one base load, the adapters loaded on it (``set_adapter``), batched
  greedy generation (left padding) at each of ``--loop-batches``, one batched embedding
  pass for similarity; held-out perplexity by one forward per text. It runs before and
  after tunegate (the load of a shared machine moves by minutes); per batch the mean of the
  two counts, and its best batch.
- **lm-eval** (the ``reference`` extra): ``lm-eval run`` once per model, as its users run
  it: a local ``generate_until`` task with ``--apply_chat_template``, and a local
  ``loglikelihood_rolling`` task for perplexity (separate processes, timed apart).

Printed: wall times, ratios to the loop, peak RSS, and whether the greedy outputs agree
(tunegate vs loop must be identical; lm-eval is reported as the share that agrees). Figures
vary with the machine's load: note ``uptime`` with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = ["France", "Japan", "Kenya", "Brazil", "Norway", "India", "Canada", "Egypt"]
TEMPLATES = [
    ("What is the capital of {}?", "The capital of {} is its largest political centre."),
    ("Name a famous dish from {}.", "A famous dish from {} is well known."),
    ("What language is spoken in {}?", "People in {} speak their national language."),
    ("Describe the weather in {} in one sentence.", "The weather in {} varies by season."),
]
HELDOUT = [
    "Support tickets are answered within one business day, and urgent ones within an hour.",
    "The river runs past the old mill and into the valley, where the town keeps its market.",
    "A regression gate compares each candidate with its baseline on the same examples.",
    "Learning rates that are too high make the loss oscillate and the model forget.",
]
TRAIN = [(f"Which queue handles ticket {i}?", "Queue: billing.") for i in range(8)]


def prompts(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        question, reference = TEMPLATES[i % len(TEMPLATES)]
        topic = TOPICS[(i // len(TEMPLATES)) % len(TOPICS)]
        suffix = "" if i < len(TEMPLATES) * len(TOPICS) else f" (variant {i})"
        out.append((question.format(topic) + suffix, reference.format(topic)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory (VmHWM) of a process, or of this one."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- preparation ---------------------------------------------------------------------------


def prepare(work: Path, n_candidates: int, steps: int) -> tuple[Path, list[Path]]:
    from service.finetune import train_lora
    from tests.models import smollm2_dir

    base = smollm2_dir()
    work.mkdir(parents=True, exist_ok=True)
    adapters = []
    for i in range(n_candidates):
        target = work / "adapters" / f"lr{i}"
        if not (target / "adapter_model.safetensors").is_file():
            trained = train_lora(
                base, TRAIN, work / "train" / f"lr{i}", learning_rate=3e-4 * (3**i), steps=steps
            ).adapter_dir
            shutil.copytree(trained, target, dirs_exist_ok=True)
        adapters.append(target)
    return base, adapters


def dataset_file(work: Path, n: int, max_new_tokens: int) -> Path:
    lines: list[dict[str, Any]] = [
        {"generation": {"max_new_tokens": max_new_tokens, "chat_template": True}}
    ]
    for i, (question, reference) in enumerate(prompts(n)):
        lines.append({"id": f"p{i:03d}", "input": question, "reference": reference})
    lines += [{"heldout": text} for text in HELDOUT]
    path = work / "bench.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# --- tunegate, end to end -------------------------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    tunegate = Path(sys.executable).with_name("tunegate")
    return subprocess.run(
        [str(tunegate), *args], env=env, capture_output=True, text=True, check=False
    )


def tunegate_run(
    args: argparse.Namespace,
    base: Path,
    adapters: list[Path],
    label: str,
    rescore: bool,
    one_command: bool = False,
) -> dict[str, Any]:
    import httpx

    data = args.work / f"tunegate-{label}"
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEGATE_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "TUNEGATE_DATA_DIR": str(data),
        "TUNEGATE_MODEL_ROOTS": str(base.parent),
        "TUNEGATE_CHECKPOINT_ROOTS": str(args.work / "adapters"),
        "TUNEGATE_DEVICE": args.device,
        "TUNEGATE_URL": f"http://127.0.0.1:{port}",
    }
    if args.threads:
        env["TUNEGATE_TORCH_THREADS"] = str(args.threads)
    tunegate = Path(sys.executable).with_name("tunegate")
    log_file = (args.work / f"server-{label}.log").open("w")
    server = subprocess.Popen(
        [str(tunegate), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        for cli in (
            (
                "dataset",
                "push",
                "bench",
                str(dataset_file(args.work, args.prompts, args.max_new_tokens)),
            ),
            ("family", "create", "bench", "--base", str(base)),
        ):
            done = run_cli(env, *cli)
            assert done.returncode == 0, done.stderr
        start = time.perf_counter()
        lrs = [f"{3e-4 * (3**i):g}" for i in range(len(adapters))]
        common = ["--family", "bench", "--sweep", label, "--dataset", "bench", "--wait", "--json"]
        if one_command:  # one process registers the sweep and waits for every verdict
            lr_args = [a for lr in lrs for a in ("--lr", lr)]
            commands = [[str(tunegate), "submit", *map(str, adapters), *lr_args, *common]]
        else:  # one process per checkpoint, all at once
            commands = [
                [str(tunegate), "submit", str(adapter), "--lr", lr, *common]
                for adapter, lr in zip(adapters, lrs, strict=True)
            ]
        procs = [
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for command in commands
        ]
        answers = [p.communicate() for p in procs]
        seconds = time.perf_counter() - start
        rss = peak_rss_mb(server.pid)
        ids: dict[str, int] = {}
        for out, err in answers:
            assert out.strip(), err
            parsed = json.loads(out)
            for item in parsed if isinstance(parsed, list) else [parsed]:
                candidate = item["candidate"]
                name = Path(item.get("checkpoint") or candidate["checkpoint_path"]).name
                ids[name] = candidate["evaluation_id"]
                ids["base"] = candidate["baseline_evaluation_id"]
        token = (data / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        outputs, ppl = {}, {}
        for name, evaluation_id in ids.items():
            url = f"http://127.0.0.1:{port}/v1/evaluations/{evaluation_id}"
            ev = httpx.get(url, headers=headers).json()
            rows = httpx.get(url + "/results?limit=500", headers=headers).json()["items"]
            outputs[name] = [r["output"] for r in sorted(rows, key=lambda r: r["example_key"])]
            ppl[name] = next(
                a["mean"] for a in ev["aggregates"] if a["metric"] == "perplexity_word"
            )
        result: dict[str, Any] = {
            "seconds": seconds, "peak_rss_mb": rss, "outputs": outputs, "ppl": ppl, "ids": ids,
        }  # fmt: skip
        if rescore:
            result |= rescore_timed(env, ids, headers, port)
        return result
    finally:
        server.terminate()
        server.wait(timeout=60)
        log_file.close()


def rescore_timed(
    env: dict[str, str], ids: dict[str, int], headers: dict[str, str], port: int
) -> dict[str, Any]:
    """Add an evaluator to every evaluation through the CLI (server side: no generation).

    Every built-in is a default, so the evaluations are first re-scored without one of them
    (untimed); adding it back is what is timed."""
    import httpx

    url = f"http://127.0.0.1:{port}/v1/evaluations/{ids['base']}"
    current = sorted(httpx.get(url, headers=headers).json()["provenance"]["evaluators"])
    extra = "refusal" if "refusal" in current else current[-1]
    without = [name for name in current if name != extra and name in _registered()]

    def rescore_all(names: list[str]) -> None:
        flags = [a for name in names for a in ("-e", name)]
        every = [str(i) for i in ids.values()]
        done = run_cli(env, "eval", "rescore", *every, *flags, "--wait", "--json")
        assert done.returncode == 0, done.stderr
        assert {e["status"] for e in json.loads(done.stdout)} == {"succeeded"}, done.stdout

    rescore_all(without)
    start = time.perf_counter()
    rescore_all([*without, extra])
    return {"rescore_seconds": time.perf_counter() - start, "added_evaluator": extra}


def _registered() -> set[str]:
    from evaluators import registry

    return set(registry.available())


def count_rescore_forwards(data: Path, ids: dict[str, int], settings_env: dict[str, str]) -> int:
    """Rescore every evaluation in-process on the benchmark's database (server stopped) with
    a forward hook on every causal LM: the forward passes a rescore runs."""
    import torch

    from service.db.session import make_engine, make_sessionmaker, unit_of_work
    from service.rescoring import rescore_evaluation
    from service.settings import Settings
    from service.worker.inprocess import InProcessWorker

    calls: list[str] = []

    def hook(module: torch.nn.Module, *_: Any) -> None:
        if type(module).__name__.endswith("ForCausalLM"):
            calls.append(type(module).__name__)

    settings = Settings(
        data_dir=data,
        model_roots=[Path(settings_env["TUNEGATE_MODEL_ROOTS"])],
        checkpoint_roots=[Path(settings_env["TUNEGATE_CHECKPOINT_ROOTS"])],
    )
    factory = make_sessionmaker(make_engine(settings.sqlalchemy_url))
    with unit_of_work(factory) as session:
        for evaluation_id in ids.values():
            rescore_evaluation(session, evaluation_id, ["collapse", "reference_match"])
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        InProcessWorker(settings, factory).run_pending()
    finally:
        handle.remove()
    return len(calls)


# --- the hand-written loop ------------------------------------------------------------------


def loop_part(args: argparse.Namespace) -> None:
    """One process: base once, adapters swapped, batched greedy generation, one embedding
    pass, per-text perplexity. Prints JSON."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    base, adapters = Path(args.base), [Path(a) for a in args.adapters]
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(base, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(args.device).eval()
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name=adapters[0].name)
    for adapter in adapters[1:]:
        model.load_adapter(adapter, adapter_name=adapter.name)
    model.to(args.device)
    items = prompts(args.prompts)
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
        )
        for q, _ in items
    ]
    order = sorted(range(len(texts)), key=lambda i: len(tok(texts[i])["input_ids"]))
    outputs: dict[str, list[str]] = {}
    ppl: dict[str, float] = {}
    with torch.inference_mode():
        for name in ["base", *(a.name for a in adapters)]:
            ctx = model.disable_adapter() if name == "base" else _null()
            if name != "base":
                model.set_adapter(name)
            with ctx:
                answers = [""] * len(texts)
                for s in range(0, len(order), args.batch):
                    chunk = order[s : s + args.batch]
                    enc = tok([texts[i] for i in chunk], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(args.device)  # fmt: skip
                    out = model.generate(
                        **enc,
                        max_new_tokens=args.max_new_tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                    )
                    for row, i in enumerate(chunk):
                        new = out[row, enc["input_ids"].shape[1] :]
                        answers[i] = tok.decode(new, skip_special_tokens=True).strip()
                outputs[name] = answers
                ppl[name] = _word_perplexity(model, tok, args.device)
    generation_done = time.perf_counter()
    from sentence_transformers import SentenceTransformer

    from evaluators.embeddings import default_embedding_model_path

    embedder = SentenceTransformer(str(default_embedding_model_path()), device="cpu")
    refs = [r for _, r in items]
    flat = [a for name in outputs for a in outputs[name]]
    vectors = embedder.encode(flat + refs, batch_size=64, normalize_embeddings=True)
    out_vec, ref_vec = vectors[: len(flat)], vectors[len(flat) :]
    similarity = [float(out_vec[k] @ ref_vec[k % len(refs)]) for k in range(len(flat))]
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds, "generation_seconds": generation_done - start,
        "peak_rss_mb": peak_rss_mb(), "outputs": outputs, "ppl": ppl,
        "mean_similarity": sum(similarity) / len(similarity),
    }))  # fmt: skip


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def _word_perplexity(model: Any, tok: Any, device: str) -> float:
    """exp(NLL / words) over the held-out texts, BOS-prefixed, one forward per text."""
    import math
    import re

    import torch

    nll, words = 0.0, 0
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    for text in HELDOUT:
        ids = [prefix, *tok(text, add_special_tokens=False)["input_ids"]]
        x = torch.tensor([ids], device=device)
        logits = model(input_ids=x).logits.float()
        logp = torch.log_softmax(logits[0, :-1], -1).gather(1, x[0, 1:, None])
        nll -= float(logp.sum())
        words += len(re.split(r"\s+", text))
    return math.exp(nll / words)


# --- lm-eval -------------------------------------------------------------------------------


def write_lm_eval_tasks(work: Path, n: int, max_new_tokens: int, eos: str) -> Path:
    folder = work / "lm_eval_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    gen = folder / "gen.jsonl"
    gen.write_text("".join(
        json.dumps({"id": f"p{i:03d}", "input": q, "reference": r}) + "\n"
        for i, (q, r) in enumerate(prompts(n))
    ))  # fmt: skip
    held = folder / "heldout.jsonl"
    held.write_text("".join(json.dumps({"text": t}) + "\n" for t in HELDOUT))
    (folder / "tg_gen.yaml").write_text(
        f"task: tg_gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {gen}\n"
        "test_split: test\noutput_type: generate_until\n"
        'doc_to_text: "{{input}}"\ndoc_to_target: "{{reference}}"\n'
        f"generation_kwargs:\n  until: [{json.dumps(eos)}]\n"
        f"  max_gen_toks: {max_new_tokens}\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    )
    (folder / "tg_ppl.yaml").write_text(
        f"task: tg_ppl\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {held}\n"
        "test_split: test\noutput_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n"
        "  - metric: bits_per_byte\n"
    )
    return folder


def lm_eval_run(
    args: argparse.Namespace, base: Path, adapter: Path | None, task: str, tasks: Path
) -> dict[str, Any]:
    out = args.work / "lm_eval_out" / f"{task}-{adapter.name if adapter else 'base'}"
    shutil.rmtree(out, ignore_errors=True)
    model_args = f"pretrained={base},dtype={args.dtype}"
    if adapter is not None:
        model_args += f",peft={adapter}"
    cmd = [
        str(Path(sys.executable).with_name("lm_eval")), "run", "--model", "hf",
        "--model_args", model_args, "--tasks", task, "--include_path", str(tasks),
        "--batch_size", str(args.lm_eval_batch), "--device", args.device,
        "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    if task == "tg_gen":
        cmd.append("--apply_chat_template")
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    samples = next(out.rglob(f"samples_{task}_*.jsonl"))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    result: dict[str, Any] = {"seconds": seconds}
    if task == "tg_gen":
        rows.sort(key=lambda r: r["doc"]["id"])
        result["outputs"] = [str(r["filtered_resps"][0]).strip() for r in rows]
    else:
        agg = json.loads(next(out.rglob("results_*.json")).read_text())["results"][task]
        result["ppl"] = agg["word_perplexity,none"]
    return result


# --- main ---------------------------------------------------------------------------------


def run_loops(
    args: argparse.Namespace, base: Path, adapters: list[Path], label: str
) -> dict[int, dict[str, Any]]:
    """The hand-written loop at each of ``--loop-batches``, each in its own process."""
    loops = {}
    for batch in [int(b) for b in args.loop_batches.split(",")]:
        cmd = [sys.executable, __file__, "--part", "loop", "--batch", str(batch),
               "--base", str(base), "--adapters", *map(str, adapters), "--device", args.device,
               "--dtype", args.dtype, "--prompts", str(args.prompts),
               "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        loops[batch] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"... loop at batch {batch} ({label}): {loops[batch]['seconds']:.1f} s", flush=True)
    return loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="LoRA training steps per adapter")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    parser.add_argument("--loop-batches", default="8,16,32")
    parser.add_argument("--lm-eval-batch", type=int, default=32)
    parser.add_argument("--skip-lm-eval", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tunegate-sweep-bench"))
    parser.add_argument("--part", choices=["loop"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--adapters", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.part == "loop":
        loop_part(args)
        return
    if args.device == "cpu" and args.dtype != "float32":
        parser.error("tunegate runs float32 on CPU; use --dtype float32 there")

    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"# {stamp}, {os.cpu_count()} CPUs, load {' '.join(load)}, device {args.device}, "
          f"dtype {args.dtype}, threads {args.threads or 'default'}")  # fmt: skip
    base, adapters = prepare(args.work, args.candidates, args.steps)
    n_models = len(adapters) + 1
    print(f"workload: SmolLM2-135M-Instruct + {len(adapters)} LoRA adapters, {args.prompts} "
          f"prompts, {args.max_new_tokens} new tokens, greedy, chat template "
          f"({n_models * args.prompts} outputs), {len(HELDOUT)} held-out texts")  # fmt: skip

    results: dict[str, Any] = {}
    # the loop runs before and after tunegate and counts with the mean of both: on a machine
    # shared with other work the load moves by minutes, and this brackets tunegate's runs
    before = run_loops(args, base, adapters, "before tunegate")
    sweep = tunegate_run(args, base, adapters, "sweep", rescore=True)
    print(f"... tunegate sweep: {sweep['seconds']:.1f} s", flush=True)
    together = tunegate_run(args, base, adapters, "sweep-1cmd", rescore=False, one_command=True)
    print(f"... tunegate sweep, one submit command: {together['seconds']:.1f} s", flush=True)
    one = tunegate_run(args, base, adapters[:1], "one", rescore=False)
    print(f"... tunegate one candidate: {one['seconds']:.1f} s", flush=True)
    env = {"TUNEGATE_MODEL_ROOTS": str(base.parent),
           "TUNEGATE_CHECKPOINT_ROOTS": str(args.work / "adapters")}  # fmt: skip
    forwards = count_rescore_forwards(args.work / "tunegate-sweep", sweep["ids"], env)
    after = run_loops(args, base, adapters, "after tunegate")
    loops = {
        b: after[b] | {"seconds": (before[b]["seconds"] + after[b]["seconds"]) / 2} for b in after
    }
    best = min(loops, key=lambda b: loops[b]["seconds"])
    loop = loops[best]

    if not args.skip_lm_eval:
        from transformers import AutoTokenizer

        eos = AutoTokenizer.from_pretrained(base).eos_token
        tasks = write_lm_eval_tasks(args.work, args.prompts, args.max_new_tokens, eos)
        models: list[Path | None] = [None, *adapters]
        gen = {
            (m.name if m else "base"): lm_eval_run(args, base, m, "tg_gen", tasks) for m in models
        }
        ppl = {
            (m.name if m else "base"): lm_eval_run(args, base, m, "tg_ppl", tasks) for m in models
        }
        results["lm_eval"] = {"gen": gen, "ppl": ppl}

    # --- report ---
    print()
    print(f"{'':34} {'wall s':>8} {'x loop':>7} {'peak RSS MB':>12}")
    print(f"{'loop (best batch ' + str(best) + ')':34} {loop['seconds']:8.1f} {1:7.2f} "
          f"{loop['peak_rss_mb']:12.0f}   (before {before[best]['seconds']:.1f} s, "
          f"after {after[best]['seconds']:.1f} s)")  # fmt: skip
    for b, r in sorted(loops.items()):
        if b != best:
            print(f"{'  loop at batch ' + str(b):34} {r['seconds']:8.1f} "
                  f"{r['seconds'] / loop['seconds']:7.2f} {r['peak_rss_mb']:12.0f}")  # fmt: skip
    print(f"{'tunegate, sweep of ' + str(len(adapters)) + ' (CLI→HTTP→DB)':34} "
          f"{sweep['seconds']:8.1f} {sweep['seconds'] / loop['seconds']:7.2f} "
          f"{sweep['peak_rss_mb']:12.0f}")  # fmt: skip
    ratio = together["seconds"] / loop["seconds"]
    print(f"{'  the same, one submit command':34} {together['seconds']:8.1f} "
          f"{ratio:7.2f} {together['peak_rss_mb']:12.0f}")  # fmt: skip
    print(f"{'tunegate, one candidate':34} {one['seconds']:8.1f} "
          f"{one['seconds'] / loop['seconds']:7.2f} {one['peak_rss_mb']:12.0f}")  # fmt: skip
    if "lm_eval" in results:
        gen_s = sum(r["seconds"] for r in results["lm_eval"]["gen"].values())
        print(f"{'lm-eval, one process per model':34} {gen_s:8.1f} {gen_s / loop['seconds']:7.2f}")
    print()
    print(f"sweep RSS / one-candidate RSS: {sweep['peak_rss_mb'] / one['peak_rss_mb']:.2f}")
    print(f"adding evaluator {sweep['added_evaluator']!r} to {n_models} evaluations: "
          f"{sweep['rescore_seconds']:.1f} s through the CLI "
          f"({100 * sweep['rescore_seconds'] / sweep['seconds']:.1f} % of the sweep's wall time); "
          f"forward passes of a rescore (hook on every causal LM): {forwards}")  # fmt: skip
    same = all(
        run["outputs"][name] == loop["outputs"][name]
        for run in (sweep, together)
        for name in loop["outputs"]
    )
    print(f"greedy outputs, tunegate vs loop: {'identical' if same else 'DIFFER'} "
          f"({n_models * args.prompts} outputs)")  # fmt: skip
    if not same:
        for name in loop["outputs"]:
            for a, b in zip(sweep["outputs"][name], loop["outputs"][name], strict=True):
                if a != b:
                    print(f"  {name}: tunegate {a!r} vs loop {b!r}")
                    break
    if "lm_eval" in results:
        gen = results["lm_eval"]["gen"]
        agree = sum(
            a == b
            for name in gen
            for a, b in zip(gen[name]["outputs"], loop["outputs"][name], strict=True)
        )
        print(f"greedy outputs, lm-eval vs loop: {agree}/{n_models * args.prompts} identical")
    print()
    print("held-out word perplexity (per model): tunegate | loop | lm-eval")
    for name in loop["ppl"]:
        lm = results.get("lm_eval", {}).get("ppl", {}).get(name, {}).get("ppl", float("nan"))
        print(f"  {name:10} {sweep['ppl'][name]:10.4f} {loop['ppl'][name]:10.4f} {lm:10.4f}")
    if "lm_eval" in results:
        ppl_s = sum(r["seconds"] for r in results["lm_eval"]["ppl"].values())
        print(f"  lm-eval perplexity, one process per model: {ppl_s:.1f} s in all "
              "(tunegate's and the loop's are inside their wall times above)")  # fmt: skip


if __name__ == "__main__":
    main()
