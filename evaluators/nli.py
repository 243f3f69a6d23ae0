"""A local NLI cross-encoder: P(premise entails hypothesis), for the hallucination scorer.

Any sequence-classification model folder works (``AutoModelForSequenceClassification``,
never remote code, never a download) as long as its ``config.id2label`` names an entailment
class: the label whose lower-cased name contains ``"entail"``. A model without one is refused,
because guessing which logit means "entailed" would give confident nonsense.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluators.errors import EvaluatorConfigError

_lock = threading.Lock()
_judges: dict[tuple[str, str], NliJudge] = {}


def entailment_index(id2label: dict[Any, str]) -> int:
    """The class index whose label names entailment; EvaluatorConfigError when there is none."""
    matches = [int(index) for index, label in id2label.items() if "entail" in str(label).lower()]
    matches = [index for index in matches if "not" not in str(id2label[index]).lower()]
    if len(matches) != 1:
        raise EvaluatorConfigError(
            f"NLI model labels {dict(id2label)} do not name exactly one entailment class"
        )
    return matches[0]


class NliJudge:
    """A loaded NLI model and tokenizer that score (premise, hypothesis) pairs."""

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(folder)
        if not (path / "config.json").is_file():
            raise EvaluatorConfigError(f"NLI model folder has no config.json: {path}")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, trust_remote_code=False, local_files_only=True, use_safetensors=True
            )
            self.tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=False, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise EvaluatorConfigError(f"cannot load NLI model from {path}: {exc}") from exc
        self.entailment = entailment_index(model.config.id2label)
        self.model = model.to(device).eval()
        self.device = device

    def entailment_probabilities(
        self, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int = 16
    ) -> list[float]:
        """P(entailment) for each (premise, hypothesis) pair; the premise is truncated first."""
        import torch

        probabilities: list[float] = []
        max_length = min(int(self.tokenizer.model_max_length), 512)
        for start in range(0, len(premises), batch_size):
            batch = self.tokenizer(
                list(premises[start : start + batch_size]),
                list(hypotheses[start : start + batch_size]),
                padding=True,
                truncation="only_first",
                max_length=max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            probabilities.extend(logits.softmax(dim=-1)[:, self.entailment].tolist())
        return probabilities


def load_nli_judge(folder: str | Path, device: str = "cpu") -> NliJudge:
    """The :class:`NliJudge` for ``folder`` on ``device``, loaded once per process."""
    key = (str(Path(folder).resolve()), device)
    with _lock:
        judge = _judges.get(key)
        if judge is None:
            judge = NliJudge(key[0], device)
            _judges[key] = judge
        return judge
