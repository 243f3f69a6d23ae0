"""``from tunegate.integrations import TunegateCallback`` (see :mod:`service.integrations`)."""

from __future__ import annotations

from service.integrations.trainer import Submitted, TunegateCallback, stage_checkpoint

__all__ = ["Submitted", "TunegateCallback", "stage_checkpoint"]
