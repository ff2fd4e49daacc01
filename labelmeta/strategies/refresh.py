"""``one-step``'s ``refresh``: the meta batch's direction kept and reused for the next meta steps.

``u``, the direction in weight space that the meta batch asks for (see :mod:`.one_step`), is the only
part of a one-step hypergradient that needs the meta batch and the inner step; the rest is a product at
the current weights. :class:`KeptDirection` holds the last ``u`` (already each process's share) and the
meta loss it came with, says when it may be reused, and is checkpointed with the strategy.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor

from ..options import check_count


class KeptDirection:
    """The last direction and its meta loss, reused for ``refresh - 1`` meta steps after the one that made it.

    Args:
        refresh: meta steps a direction serves, its own included (1: never reused).
    """

    def __init__(self, refresh: int = 1) -> None:
        self.refresh = check_count("refresh", refresh)
        self._direction: Optional[Tuple[List[Tensor], float]] = None
        self._uses = 0  # meta steps that have used it

    def reusable(self) -> bool:
        """Whether the next meta step takes the kept direction instead of computing one."""
        return self._direction is not None and self._uses < self.refresh

    def reuse(self) -> Tuple[List[Tensor], float]:
        """The kept direction and its meta loss, counted as used once more."""
        assert self._direction is not None
        self._uses += 1
        return self._direction

    def keep(self, direction: List[Tensor], meta_loss: float) -> None:
        """Keep a new direction (where it will be reused), used once already."""
        if self.refresh > 1:
            self._direction, self._uses = ([d.detach() for d in direction], meta_loss), 1

    def state_dict(self) -> Dict[str, Any]:
        """The kept direction: a resumed run reuses it as the uninterrupted one does."""
        if self._direction is None:
            return {}
        return {"direction": list(self._direction[0]), "meta_loss": self._direction[1], "uses": self._uses}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not state:
            self._direction, self._uses = None, 0
            return
        self._direction, self._uses = (list(state["direction"]), float(state["meta_loss"])), int(state["uses"])
