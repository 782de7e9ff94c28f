"""Argument checks and optimizer / scheduler construction for :func:`fit`."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import torch

from lumigrad.optim.large_steps import AdamUniform

__all__: list[str] = []  # private helpers of lumigrad.optim.fit

OptimizerFactory = Callable[[list[dict]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]

_OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": lambda groups: torch.optim.Adam(groups),
    "sgd": lambda groups: torch.optim.SGD(groups),
    "adam_uniform": lambda groups: AdamUniform(groups),
}
_SCHEDULES = ("cosine", "exponential", "step")


def named_params(params) -> dict[str, torch.Tensor]:
    """Validate ``params`` and return it as a ``name -> tensor`` dict.

    A dict is returned as is (the same object, so ``replace_params`` updates the
    caller's dict); other iterables get names ``"0"``, ``"1"``, ...
    """
    if isinstance(params, torch.Tensor):
        raise TypeError("fit(): params must be a dict[str, Tensor] or an iterable of tensors, got a single Tensor (wrap it: [t])")
    if isinstance(params, Mapping):
        named = params
    else:
        try:
            named = {str(i): t for i, t in enumerate(params)}
        except TypeError:
            raise TypeError(
                f"fit(): params must be a dict[str, Tensor] or an iterable of tensors, got {type(params).__name__}"
            ) from None
    check_param_dict("fit", "params", named)
    return named  # type: ignore[return-value]


def check_param_dict(fn: str, arg: str, named: Mapping) -> None:
    if len(named) == 0:
        raise ValueError(f"{fn}(): {arg} is empty; nothing to optimise")
    seen: set[int] = set()
    for name, t in named.items():
        if not isinstance(name, str):
            raise TypeError(f"{fn}(): {arg} keys must be str, got {type(name).__name__} {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}(): {arg}[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{fn}(): {arg}[{name!r}] must be a floating-point tensor, got {t.dtype}")
        if not t.requires_grad:
            raise ValueError(f"{fn}(): {arg}[{name!r}] does not require grad (call .requires_grad_() on it)")
        if not t.is_leaf:
            raise ValueError(
                f"{fn}(): {arg}[{name!r}] is not a leaf tensor (it was computed from others); "
                "optimise a leaf, e.g. t.detach().requires_grad_()"
            )
        if id(t) in seen:
            raise ValueError(f"{fn}(): {arg}[{name!r}] is the same tensor as another entry")
        seen.add(id(t))


def _positive(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"fit(): {name} must be a float > 0, got {type(v).__name__}")
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"fit(): {name} must be > 0, got {v!r}")
    return float(v)


def lr_per_name(lr, names: list[str]) -> dict[str, float]:
    """Validate ``lr`` (float or ``name -> float`` covering every parameter)."""
    if isinstance(lr, Mapping):
        unknown = sorted(set(lr) - set(names))
        missing = [n for n in names if n not in lr]
        if unknown or missing:
            raise ValueError(
                f"fit(): lr dict must have exactly the parameter names {names}, "
                f"got unknown {unknown} and missing {missing}"
            )
        return {n: _positive(f"lr[{n!r}]", lr[n]) for n in names}
    value = _positive("lr", lr)
    return {n: value for n in names}


def optimizer_factory(optimizer) -> OptimizerFactory:
    """Resolve ``"adam" | "sgd" | "adam_uniform"`` or a factory ``groups -> Optimizer``."""
    if isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "fit(): optimizer must be a name or a factory, got an Optimizer instance; pass e.g. "
            "`lambda groups: torch.optim.AdamW(groups, weight_decay=0.01)` so fit() can build "
            "(and, after replace_params, rebuild) it"
        )
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"fit(): optimizer must be one of {sorted(_OPTIMIZERS)} or a factory, got {optimizer!r}")
        return _OPTIMIZERS[key]
    if callable(optimizer):
        return optimizer
    raise TypeError(f"fit(): optimizer must be a str or a callable factory, got {type(optimizer).__name__}")


def build_optimizer(factory: OptimizerFactory, groups: list[dict]) -> torch.optim.Optimizer:
    opt = factory(groups)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"fit(): the optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
    return opt


def scheduler_factory(schedule, max_iters: int) -> SchedulerFactory | None:
    """Resolve ``None | "cosine" | "exponential" | "step"`` or a factory ``optimizer -> scheduler``.

    ``cosine`` anneals to 0 over ``max_iters``; ``exponential`` decays the lr by
    100x over ``max_iters``; ``step`` divides it by 10 every ``max_iters // 3``.
    """
    sched = torch.optim.lr_scheduler
    if schedule is None:
        return None
    if isinstance(schedule, str):
        key = schedule.lower()
        if key == "cosine":
            return lambda opt: sched.CosineAnnealingLR(opt, T_max=max_iters)
        if key == "exponential":
            return lambda opt: sched.ExponentialLR(opt, gamma=0.01 ** (1.0 / max_iters))
        if key == "step":
            return lambda opt: sched.StepLR(opt, step_size=max(1, max_iters // 3), gamma=0.1)
        raise ValueError(f"fit(): schedule must be None, one of {list(_SCHEDULES)} or a factory, got {schedule!r}")
    if callable(schedule):
        return schedule
    raise TypeError(f"fit(): schedule must be None, a str or a callable factory, got {type(schedule).__name__}")


def build_scheduler(factory: SchedulerFactory | None, opt: torch.optim.Optimizer):
    if factory is None:
        return None
    s = factory(opt)
    if not all(hasattr(s, a) for a in ("step", "state_dict", "load_state_dict")):
        raise TypeError(f"fit(): the schedule factory must return a torch lr scheduler, got {type(s).__name__}")
    return s


def rebuild(
    opt_factory: OptimizerFactory,
    sched_factory: SchedulerFactory | None,
    old_opt: torch.optim.Optimizer,
    old_sched,
    new_params: Mapping[str, torch.Tensor],
):
    """New optimizer and scheduler over ``new_params`` keeping each group's hyperparameters.

    Optimizer moment state is dropped (tensor sizes may have changed); the
    scheduler keeps its position (``last_epoch``) and the current learning rates.
    """
    groups = []
    for g in old_opt.param_groups:
        new_g = {k: v for k, v in g.items() if k != "params"}
        new_g["params"] = [new_params[g["name"]]]
        groups.append(new_g)
    opt = build_optimizer(opt_factory, groups)
    sched = build_scheduler(sched_factory, opt)
    if sched is not None and old_sched is not None:
        sched.load_state_dict(old_sched.state_dict())
    # Building a scheduler resets each group's lr to its initial value: put the current one back.
    for g, old in zip(opt.param_groups, old_opt.param_groups):
        g["lr"] = old["lr"]
    return opt, sched


def param_groups(named: Mapping[str, torch.Tensor], lrs: dict[str, float], order: Iterable[str]) -> list[dict]:
    """One optimizer param group per named parameter, tagged with its name."""
    return [{"params": [named[n]], "lr": lrs[n], "name": n} for n in order]
