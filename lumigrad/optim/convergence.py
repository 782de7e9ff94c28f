"""When to stop a fit: loss threshold, plateau of the best loss, or an iteration cap."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Convergence", "StopReason"]

StopReason = str  # one of "threshold" | "plateau" | "max_iters" | "callback"


@dataclass(frozen=True)
class Convergence:
    """Stopping rule for :func:`lumigrad.optim.fit.fit`.

    After each iteration the rules are tested in this order:

    1. ``"threshold"``: the loss is ``<= loss_threshold``;
    2. ``"plateau"``: the best loss so far has not improved by a relative
       ``rel_improvement`` (i.e. to below ``best - rel_improvement * |best|``)
       for ``patience`` consecutive iterations;
    3. ``"max_iters"``: ``max_iters`` iterations are done.

    Rules 1 and 2 only apply once ``min_iters`` iterations are done.

    Args:
        max_iters: iteration cap, ``>= 1``.
        loss_threshold: stop when the loss reaches this value; ``None`` disables.
        rel_improvement: relative decrease that counts as progress, ``>= 0``.
        patience: iterations without progress before a plateau stop, ``>= 1``;
            ``None`` disables plateau detection.
        min_iters: no early stop before this many iterations, ``>= 0``.

    Example::

        Convergence(max_iters=500, rel_improvement=1e-3, patience=30)
    """

    max_iters: int = 1000
    loss_threshold: float | None = None
    rel_improvement: float = 1e-4
    patience: int | None = 50
    min_iters: int = 0

    def __post_init__(self):
        def _int(name: str, v, lo: int) -> None:
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"Convergence(): {name} must be an int >= {lo}, got {v!r}")

        _int("max_iters", self.max_iters, 1)
        _int("min_iters", self.min_iters, 0)
        if self.patience is not None:
            _int("patience", self.patience, 1)
        if not isinstance(self.rel_improvement, (int, float)) or not (0.0 <= self.rel_improvement < math.inf):
            raise ValueError(f"Convergence(): rel_improvement must be a finite float >= 0, got {self.rel_improvement!r}")
        if self.loss_threshold is not None and (
            not isinstance(self.loss_threshold, (int, float)) or math.isnan(self.loss_threshold)
        ):
            raise ValueError(f"Convergence(): loss_threshold must be a float or None, got {self.loss_threshold!r}")

    def improved(self, loss: float, best: float) -> bool:
        """Whether ``loss`` counts as progress over the best loss ``best``."""
        if math.isinf(best):
            return loss < best
        return loss < best - self.rel_improvement * abs(best)

    def reason(self, iterations_done: int, loss: float, since_best: int) -> StopReason | None:
        """Stop reason after ``iterations_done`` iterations, or ``None`` to continue.

        Args:
            iterations_done: completed iterations (1 after the first).
            loss: the latest loss.
            since_best: iterations since the best loss last improved.
        """
        if iterations_done >= self.min_iters:
            if self.loss_threshold is not None and loss <= self.loss_threshold:
                return "threshold"
            if self.patience is not None and since_best >= self.patience:
                return "plateau"
        if iterations_done >= self.max_iters:
            return "max_iters"
        return None
