"""The job's forward passes besides generation: records scored by log-likelihood
(multiple choice, gold continuations), in resumable chunks, and held-out perplexity."""

from __future__ import annotations

from typing import Any

from evaluators import loglikelihood as loglikelihood_metrics
from evaluators import perplexity
from evaluators.perplexity import rolling_perplexity
from service.db.session import unit_of_work
from service.engine import lease, storage
from service.engine.aggregates import AggregateRow
from service.engine.batching import loglik_token_budget
from service.engine.context import WorkerContext, check_continue
from service.engine.loading import LoadedModel
from service.engine.loglikelihood import is_loglikelihood_record, score_records
from service.engine.scoring import ScoreValue, checked
from service.queries.results import done_keys


def score_by_likelihood(
    spec: storage.JobSpec,
    ctx: WorkerContext,
    loaded: LoadedModel,
    generation_config: dict[str, Any],
    heartbeat: lease.Heartbeat,
) -> None:
    """Multiple-choice and gold-continuation records: scored by log-likelihood, no generation,
    in chunks written like generated ones (so progress, resume and the cache hold)."""
    with unit_of_work(ctx.factory, write=False) as session:
        done = done_keys(session, spec.evaluation_id)
    todo = [e for e in spec.examples if e.id not in done and is_loglikelihood_record(e)]
    chunk_size = ctx.settings.chunk_size
    for start in range(0, len(todo), chunk_size):
        check_continue(ctx, spec.evaluation_id, heartbeat)
        chunk = todo[start : start + chunk_size]
        records = score_records(
            loaded,
            chunk,
            chat_template=generation_config["chat_template"],
            system=generation_config.get("system"),
            batch_size=ctx.batch_sizer().rows(loaded),
        )
        ctx.forward_passes += len(chunk)
        scorer = loglikelihood_metrics.SCORER
        rows = [
            storage.ChunkRow(
                e.id,
                r.output,
                r.n_prompt_tokens,
                0,
                {
                    m: ScoreValue(v, scorer.name, scorer.version)
                    for m, v in checked(scorer, r.scores, f"example {e.id!r}").items()
                },
            )
            for e, r in zip(chunk, records, strict=True)
        ]
        with unit_of_work(ctx.factory) as session:
            n_done = storage.write_chunk(session, spec.evaluation_id, rows)
        if ctx.after_chunk is not None:
            ctx.after_chunk(spec.evaluation_id, n_done)


def heldout_perplexity(
    spec: storage.JobSpec, loaded: LoadedModel, ctx: WorkerContext
) -> list[AggregateRow]:
    """Rolling perplexity over the held-out texts: the whole-model aggregate rows."""
    if not spec.heldout:
        return []
    result = rolling_perplexity(
        loaded.model,
        loaded.tokenizer,
        spec.heldout,
        batch_size=ctx.batch_sizer().rows(loaded),
        max_batch_tokens=loglik_token_budget(loaded),
    )
    ctx.forward_passes += 1
    values = checked(
        perplexity.SCORER,
        {"perplexity_token": result.token_perplexity, "perplexity_word": result.word_perplexity},
        "held-out texts",
    )
    return [
        AggregateRow(
            "perplexity_token",
            "model",
            "heldout",
            result.n_tokens,
            values["perplexity_token"],
            None,
            None,
        ),
        AggregateRow(
            "perplexity_word",
            "model",
            "heldout",
            result.n_words,
            values["perplexity_word"],
            None,
            None,
        ),
    ]
