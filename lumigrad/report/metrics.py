"""Metrics as JSON: tensors and numpy values become plain numbers and lists."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from lumigrad._runtime.files import write_text_atomic

__all__ = ["save_metrics", "to_jsonable"]


def _number(x: float | int | bool):
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN/inf
    return x


def to_jsonable(obj: Any, where: str = "metrics") -> Any:
    """Convert ``obj`` to JSON-native types.

    Tensors and numpy arrays become (nested) lists, 0-d ones and numpy scalars
    plain numbers; dicts (keys made ``str``), lists, tuples, dataclasses and
    paths are converted recursively. NaN and inf become ``None`` (strict JSON).

    Args:
        obj: the value to convert.
        where: its location, for error messages.

    Raises:
        TypeError: a value of another type (names its location, e.g. ``metrics['a'][2]``).
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, float)):
        return _number(obj)
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.generic):
        return _number(obj.item())
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"save_metrics(): {where} is an array of {obj.dtype}; only numbers are supported")
        return to_jsonable(obj.tolist(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"save_metrics(): {where} has unsupported type {type(obj).__name__}")


def save_metrics(path: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as indented JSON, atomically.

    Args:
        path: output file (``.json`` by convention); parent folders are created.
        metrics: ``name -> value``; values may be numbers, strings, tensors,
            numpy arrays/scalars, and lists/dicts/dataclasses of those (see
            :func:`to_jsonable`; NaN/inf are written as ``null``).

    Returns:
        The path written.

    Example::

        save_metrics("out/metrics.json", {"psnr": psnr_t, "iterations": res.iterations,
                                          "loss_curve": res.history.loss})
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save_metrics(): path must be a str or PathLike, got {type(path).__name__}")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"save_metrics(): metrics must be a dict, got {type(metrics).__name__}")
    text = json.dumps(to_jsonable(metrics), indent=2, allow_nan=False) + "\n"
    p = Path(path)
    write_text_atomic(p, text)
    return p
