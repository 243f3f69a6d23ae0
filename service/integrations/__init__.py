"""Integrations with the fine-tuning toolchain (also importable as ``tunegate.integrations``).

``TunegateCallback`` is imported lazily: ``import service.integrations`` costs nothing
until the callback (and so ``transformers``) is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.integrations.trainer import TunegateCallback

__all__ = ["TunegateCallback"]


def __getattr__(name: str) -> Any:
    if name == "TunegateCallback":
        from service.integrations.trainer import TunegateCallback

        return TunegateCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
