"""Fit checkpoints: atomic ``torch.save`` of everything needed to resume exactly.

A checkpoint holds the parameters, optimizer and scheduler state, the number
of completed iterations, the loss history, the convergence counters and the
random number generator states (torch CPU, CUDA when initialised, NumPy's and
Python's global generators, and any ``torch.Generator`` named in the config).
It is written through :func:`lumigrad._runtime.files.atomic_path`, so a crash
mid-write keeps the previous checkpoint.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lumigrad._runtime.files import atomic_path

__all__ = ["CheckpointConfig", "save_checkpoint", "load_checkpoint", "check_optimizer_matches"]

_FORMAT = "lumigrad.fit.checkpoint/1"
# What fit() writes and reads back; a checkpoint lacking any of these cannot be resumed.
FIT_KEYS = (
    "iteration", "param_names", "params", "optimizer", "scheduler", "history",
    "best_loss", "best_iteration", "since_best", "elapsed", "rng",
)


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often :func:`lumigrad.optim.fit.fit` saves a checkpoint.

    A checkpoint is written every ``every`` completed iterations and once when
    the fit ends (not when it fails: a NaN loss keeps the last good one).

    Args:
        path: checkpoint file (``.pt`` by convention); parent folders are created.
        every: save after every ``every`` completed iterations, ``>= 1``.
        generators: explicit ``torch.Generator`` objects the closure draws from;
            their states are saved and restored too, so a resumed fit draws the
            same random numbers as an uninterrupted one.

    Example::

        CheckpointConfig("out/fit.pt", every=50)
    """

    path: str | os.PathLike
    every: int = 100
    generators: tuple[torch.Generator, ...] = ()

    def __post_init__(self):
        if not isinstance(self.path, (str, os.PathLike)) or str(self.path) == "":
            raise TypeError(f"CheckpointConfig(): path must be a non-empty str or PathLike, got {self.path!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"CheckpointConfig(): every must be an int >= 1, got {self.every!r}")
        gens = tuple(self.generators)
        for g in gens:
            if not isinstance(g, torch.Generator):
                raise TypeError(f"CheckpointConfig(): generators must be torch.Generator objects, got {type(g).__name__}")
        object.__setattr__(self, "generators", gens)


def _rng_state(generators: tuple[torch.Generator, ...]) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
        "generators": [g.get_state() for g in generators],
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generators: tuple[torch.Generator, ...]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["generators"]
    if len(saved) != len(generators):
        raise ValueError(
            f"fit(): the checkpoint saved {len(saved)} generator states but CheckpointConfig.generators "
            f"has {len(generators)}; pass the same generators as the original run"
        )
    for g, s in zip(generators, saved):
        g.set_state(s)
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(config: CheckpointConfig, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` plus the RNG states to ``config.path``; return the path.

    Args:
        config: the checkpoint configuration.
        payload: plain containers of tensors, numbers and strings (see ``fit``).
    """
    path = Path(config.path)
    obj = dict(payload, format=_FORMAT, rng=_rng_state(config.generators))
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_checkpoint(
    config: CheckpointConfig, *, restore_rng: bool = True, required: tuple[str, ...] = ("rng",), writer: str = "fit()"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (CPU tensors, ``weights_only``).

    Args:
        config: the checkpoint configuration (its path and generators).
        restore_rng: also restore the global and configured generator states.
        required: keys the payload must have (``FIT_KEYS`` for :func:`fit`'s);
            a file from another writer is refused with the keys it has.
        writer: who writes such checkpoints, for the error message.

    Returns:
        The payload dict, tensors on the CPU.

    Raises:
        ValueError: the file is not a lumigrad fit checkpoint.
    """
    path = Path(config.path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise ValueError(f"fit(): cannot read checkpoint {str(path)!r} ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(f"fit(): {str(path)!r} is not a lumigrad fit checkpoint (format {_FORMAT})")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(
            f"checkpoint {str(path)!r} lacks {missing}: expected a checkpoint written by {writer} with "
            f"{list(required)}, got keys {sorted(k for k in obj if k != 'format')}"
        )
    if restore_rng:
        _set_rng_state(obj["rng"], config.generators)
    return obj


def _hyper_keys(state_dict: dict) -> list[str]:
    groups = state_dict.get("param_groups") or [{}]
    return sorted(set(groups[0]) - {"params", "name"})


def check_optimizer_matches(path, ckpt: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Refuse to load a checkpoint's optimizer state into a different kind of optimizer.

    ``torch.optim.Optimizer.load_state_dict`` accepts any state whose parameter
    groups line up, so e.g. Adam state loaded into SGD fails later with
    ``KeyError: 'momentum'``. This names what the checkpoint holds and what the
    fit uses instead.
    """
    saved_cls = ckpt.get("optimizer_class")
    now_cls = type(optimizer).__name__
    saved_keys = _hyper_keys(ckpt["optimizer"]) if isinstance(ckpt.get("optimizer"), dict) else None
    now_keys = _hyper_keys(optimizer.state_dict())
    if (saved_cls is not None and saved_cls != now_cls) or saved_keys != now_keys:
        saved = saved_cls or "an optimizer"
        raise ValueError(
            f"fit(): checkpoint {str(path)!r} holds the state of {saved} with hyperparameters {saved_keys}, "
            f"but this fit uses {now_cls} with {now_keys}; resume with the same optimizer, or start afresh "
            f"(resume=False or remove the checkpoint)"
        )
    saved_groups = [len(g.get("params", ())) for g in ckpt["optimizer"].get("param_groups", ())]
    now_groups = [len(g["params"]) for g in optimizer.param_groups]
    if saved_groups != now_groups:
        raise ValueError(
            f"fit(): checkpoint {str(path)!r} has optimizer parameter groups of sizes {saved_groups}, "
            f"this fit has {now_groups}; resume with the same parameters"
        )
