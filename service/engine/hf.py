"""The Hugging Face types the engine passes around, named once for annotations.

Imported only while type-checking (``if TYPE_CHECKING:``): at run time nothing here loads
transformers or peft. mypy does not follow those libraries (see ``[tool.mypy]``), so these
names document what a function takes rather than let mypy check it; still truer than ``Any``.
"""

from __future__ import annotations

from typing import TypeAlias

from peft import PeftModel
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache

CausalLM: TypeAlias = PreTrainedModel | PeftModel
"""A causal language model: a base model, or a base with PEFT adapters."""
Tokenizer: TypeAlias = PreTrainedTokenizerBase
KVCache: TypeAlias = Cache
"""The past key/values a prefill returns and a decode step extends."""

__all__ = ["CausalLM", "GenerationConfig", "KVCache", "Tokenizer"]
