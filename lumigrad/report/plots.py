"""Loss curves (matplotlib, Agg canvas; no pyplot, so no global figure state)."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from lumigrad._runtime.files import atomic_path

__all__ = ["save_loss_curve"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _curves(fn: str, history) -> dict[str, list[float]]:
    """``name -> values``; the total comes first under ``"total"``."""
    if hasattr(history, "loss") and hasattr(history, "terms"):  # a FitHistory (duck-typed)
        raw = {"total": history.loss, **dict(history.terms)}
    elif isinstance(history, Mapping):
        raw = dict(history)
        if "loss" in raw and "total" not in raw:
            raw = {"total": raw.pop("loss"), **raw}
        if isinstance(raw.get("terms"), Mapping):  # FitHistory.to_dict() layout
            raw = {"total": raw["total"], **dict(raw["terms"])}
    elif isinstance(history, Sequence) and not isinstance(history, str):
        raw = {"total": history}
    else:
        raise TypeError(
            f"{fn}(): history must be a FitHistory, a dict name -> list of floats or a list of floats, "
            f"got {type(history).__name__}"
        )
    out: dict[str, list[float]] = {}
    for name, values in raw.items():
        try:
            out[str(name)] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise TypeError(f"{fn}(): history[{name!r}] must be a sequence of numbers") from None
    if not out or all(len(v) == 0 for v in out.values()):
        raise ValueError(f"{fn}(): history is empty; nothing to plot")
    return out


def save_loss_curve(
    path: str | os.PathLike,
    history,
    log_y: bool = True,
    title: str = "loss",
) -> Path:
    """Plot the total loss and every named term against the iteration, atomically.

    Args:
        path: ``.png`` (also ``.pdf``, ``.svg``, ``.jpg``); parent folders are created.
        history: a :class:`lumigrad.optim.fit.FitHistory`, its ``to_dict()``, a
            ``name -> list of floats`` dict (``"total"`` or ``"loss"`` drawn
            thickest) or a plain list of losses. NaNs (iterations where a term
            was not reported) leave gaps.
        log_y: logarithmic y axis; falls back to ``symlog`` when a curve has
            values ``<= 0``.
        title: the figure title.

    Returns:
        The path written.

    Example::

        result = fit(params, closure)
        save_loss_curve("out/loss.png", result.history)
    """
    fn = "save_loss_curve"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}(): path must be a str or PathLike, got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"{fn}(): path must end in one of {list(_SUFFIXES)}, got {str(p)!r}")
    curves = _curves(fn, history)

    # Explicit Agg canvas: works headless and never touches pyplot's global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in curves.items():
        is_total = name == "total"
        ax.plot(range(len(values)), values, label=name, linewidth=2.0 if is_total else 1.2,
                color="black" if is_total else None, zorder=3 if is_total else 2)
    if log_y:
        finite = [v for vs in curves.values() for v in vs if math.isfinite(v)]
        if finite and min(finite) > 0:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=max(1e-8, min((abs(v) for v in finite if v != 0), default=1.0)))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(str(title))
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with atomic_path(p) as tmp:
        fig.savefig(tmp)
    return p
