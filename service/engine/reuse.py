"""Outputs and scores, cached apart.

What a model generates depends on its weights, the dataset, the generation config and the
dtype, and on nothing else: that is an evaluation's ``cache_key`` (:func:`outputs_key`). A
score depends on the output and on its evaluator's name, version and options, which every
``Score`` row carries. So an evaluator added, upgraded or configured differently never
costs a forward pass:

- a new evaluation whose outputs key matches a succeeded one copies that one's outputs and
  whole-model metrics (:func:`reuse_outputs`) and every stored score whose evaluator
  identity is in its own set (:func:`copy_scores`);
- scores then missing, stale (another version or options) or of an evaluator no longer in
  the set are computed from the stored outputs or deleted (:func:`score_stored_outputs`),
  which is also all that ``POST /v1/evaluations/{id}/rescore`` makes the job do.

Functions here only ``flush()``; :func:`score_stored_outputs` runs its own units of work.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy import and_, delete, func, not_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from evaluators.base import Example
from service.db.models import Aggregate, Evaluation, ExampleResult, Score
from service.db.session import unit_of_work
from service.engine.aggregates import AggregateRow
from service.engine.provenance import cache_key
from service.engine.scoring import EvaluatorSet, ScorerIdentity
from service.jsontypes import JSONObject
from service.lifecycle import SUCCEEDED
from service.queries.results import outputs_by_evaluation

#: Outputs scored per call of the evaluators (and per commit) when scoring stored outputs;
#: the job passes ``TUNEGATE_SCORE_CHUNK_SIZE``.
RESCORE_CHUNK = 256


def outputs_key(
    *,
    base_digests: dict[str, str],
    candidate_digests: dict[str, str],
    dataset_digest: str,
    generation: JSONObject,
    dtype: str,
) -> str:
    """The key of what a model generates: weights, dataset, generation config, dtype."""
    return cache_key(
        base_digests=base_digests,
        candidate_digests=candidate_digests,
        dataset_digest=dataset_digest,
        config={**generation, "dtype": dtype},
        evaluator_versions={},
    )


def _same_outputs(key: str, evaluation_id: int) -> Any:
    return select(Evaluation.id).where(
        Evaluation.cache_key == key,
        Evaluation.status == SUCCEEDED,
        Evaluation.id != evaluation_id,
    )


def reuse_outputs(
    session: Session, key: str, evaluation_id: int, *, with_scores_of: Collection[str] = ()
) -> int | None:
    """Copy the outputs and model metrics of a succeeded evaluation with the same outputs
    key into ``evaluation_id``, when it has no output of its own yet; returns the source id.

    ``with_scores_of``: evaluators whose scores come from forward passes (log-likelihood),
    copied with the outputs they belong to."""
    if session.scalar(select(func.count()).where(ExampleResult.evaluation_id == evaluation_id)):
        return None
    source: int | None = session.scalar(
        _same_outputs(key, evaluation_id)
        .where(Evaluation.progress_done == Evaluation.progress_total)
        .order_by(Evaluation.id)
        .limit(1)
    )
    if source is None:
        return None
    for row in session.scalars(select(ExampleResult).where(ExampleResult.evaluation_id == source)):
        session.add(
            ExampleResult(
                evaluation_id=evaluation_id,
                example_key=row.example_key,
                output=row.output,
                n_prompt_tokens=row.n_prompt_tokens,
                n_new_tokens=row.n_new_tokens,
            )
        )
    mine = Aggregate.evaluation_id == evaluation_id
    session.execute(delete(Aggregate).where(mine, Aggregate.scope == "model"))
    for agg in model_aggregates(session, source):
        session.add(Aggregate(evaluation_id=evaluation_id, **asdict(agg)))
    if with_scores_of:
        _copy_score_rows(session, source, evaluation_id, with_scores_of)
    evaluation = session.get_one(Evaluation, evaluation_id)
    evaluation.progress_done = evaluation.progress_total
    session.flush()
    return source


def copy_scores(
    session: Session, key: str, evaluation_id: int, identities: Mapping[str, ScorerIdentity]
) -> list[str]:
    """For each evaluator with no score in ``evaluation_id`` yet, copy the scores that a
    succeeded evaluation with the same outputs key holds under the same (name, version,
    options); returns the evaluators copied."""
    present = set(
        session.scalars(select(Score.evaluator).where(Score.evaluation_id == evaluation_id))
    )
    wanted = {name: ident for name, ident in identities.items() if name not in present}
    if not wanted:
        return []
    found: dict[str, int] = {}
    for source, name, version, options in session.execute(
        select(
            Score.evaluation_id, Score.evaluator, Score.evaluator_version, Score.evaluator_options
        )
        .where(Score.evaluation_id.in_(_same_outputs(key, evaluation_id)))
        .distinct()
        .order_by(Score.evaluation_id)
    ):
        if wanted.get(name) == (name, version, options) and name not in found:
            found[name] = source
    for name, source in found.items():
        _copy_score_rows(session, source, evaluation_id, [name])
    session.flush()
    return sorted(found)


def _copy_score_rows(
    session: Session, source: int, target: int, evaluators: Collection[str]
) -> None:
    for row in session.scalars(
        select(Score).where(Score.evaluation_id == source, Score.evaluator.in_(evaluators))
    ):
        session.add(
            Score(
                evaluation_id=target,
                example_key=row.example_key,
                metric=row.metric,
                value=row.value,
                evaluator=row.evaluator,
                evaluator_version=row.evaluator_version,
                evaluator_options=row.evaluator_options,
            )
        )


def model_aggregates(session: Session, evaluation_id: int) -> list[AggregateRow]:
    """The evaluation's whole-model metrics (held-out perplexity) as stored."""
    return [
        AggregateRow(a.metric, a.scope, a.scope_value, a.n, a.mean, a.ci_low, a.ci_high)
        for a in session.scalars(
            select(Aggregate)
            .where(Aggregate.evaluation_id == evaluation_id, Aggregate.scope == "model")
            .order_by(Aggregate.metric)
        )
    ]


def drop_stale_scores(
    session: Session,
    evaluation_id: int,
    identities: Mapping[str, ScorerIdentity],
    keep: Collection[str] = (),
) -> None:
    """Delete scores of evaluators not in the set, or stored under another version/options
    (``keep``: evaluators whose scores belong to the outputs, left alone)."""
    current = [
        and_(
            Score.evaluator == name,
            Score.evaluator_version == version,
            Score.evaluator_options == options,
        )
        for name, version, options in identities.values()
    ]
    current.append(Score.evaluator.in_(keep))
    session.execute(delete(Score).where(Score.evaluation_id == evaluation_id, not_(or_(*current))))
    session.flush()


def unscored(
    session: Session, evaluation_id: int, names: Collection[str], exclude: Collection[str]
) -> dict[str, set[str]]:
    """Example key → the evaluators (of ``names``) with no score for its stored output."""
    outputs = set(
        session.scalars(
            select(ExampleResult.example_key).where(ExampleResult.evaluation_id == evaluation_id)
        )
    )
    scored: dict[str, set[str]] = {}
    for key, name in session.execute(
        select(Score.example_key, Score.evaluator)
        .where(Score.evaluation_id == evaluation_id)
        .distinct()
    ):
        scored.setdefault(key, set()).add(name)
    missing: dict[str, set[str]] = {}
    for key in outputs - set(exclude):
        need = set(names) - scored.get(key, set())
        if need:
            missing[key] = need
    return missing


def score_stored_outputs(
    factory: sessionmaker[Session],
    evaluation_id: int,
    examples: list[Example],
    scorers: EvaluatorSet,
    *,
    exclude: Collection[str] = (),
    keep: Collection[str] = (),
    chunk_size: int = RESCORE_CHUNK,
    after_chunk: Callable[[int, int], None] | None = None,
) -> int:
    """Bring the stored outputs' scores in line with ``scorers``, without a forward pass.

    Stale scores are deleted, then every (output, evaluator) pair without a score is scored
    from the stored text (``exclude``: keys just generated and scored in this run), and
    committed ``chunk_size`` outputs at a time (``after_chunk(evaluation_id, scored so
    far)`` after each). A run cut short leaves whole chunks; the next one computes only
    the pairs still missing, so no score is lost or stored twice. An evaluator that does
    not apply to an example stores nothing for it and is asked again next time (cheaply:
    it skips the example). ``keep``: evaluators whose scores come with the outputs
    (log-likelihood), never deleted. Returns the outputs scored.
    """
    identities = scorers.identities
    with unit_of_work(factory) as session:
        drop_stale_scores(session, evaluation_id, identities, keep)
    with unit_of_work(factory, write=False) as session:
        missing = unscored(session, evaluation_id, identities, exclude)
        outputs = outputs_by_evaluation(session, [evaluation_id])[evaluation_id]
    by_key = {e.id: e for e in examples if e.id in missing}
    keys = sorted(by_key)
    for start in range(0, len(keys), chunk_size):
        chunk = keys[start : start + chunk_size]
        names = set().union(*(missing[k] for k in chunk))
        scores = scorers.score([by_key[k] for k in chunk], [outputs[k] for k in chunk], only=names)
        with unit_of_work(factory) as session:
            for key, row in zip(chunk, scores, strict=True):
                for metric, score in row.items():
                    if score.evaluator not in missing[key]:
                        continue
                    session.add(
                        Score(
                            evaluation_id=evaluation_id,
                            example_key=key,
                            metric=metric,
                            value=score.value,
                            evaluator=score.evaluator,
                            evaluator_version=score.version,
                            evaluator_options=score.options,
                        )
                    )
        if after_chunk is not None:
            after_chunk(evaluation_id, start + len(chunk))
    return len(keys)
