"""The fitting loop: zero_grad / backward / step with history, stopping, checkpoints.

:func:`fit` drives any closure that returns a scalar loss (or a
:class:`LossTerms`). It records the loss, named terms, learning rates and wall
time per iteration, stops on a :class:`~lumigrad.optim.convergence.Convergence`
rule or at a callback's request, saves resumable checkpoints atomically, and
refuses to step on a NaN/inf loss or gradient.

Changing the parameters mid-fit (remeshing, coarse-to-fine textures): pass the
parameters as a dict that the closure reads, and in a callback build the new
leaf tensors and call ``state.replace_params(new)``. It updates that same dict
in place and rebuilds the optimizer (moment state is reset, learning rates and
the schedule position are kept)::

    mesh = {"faces": faces}
    params = {"verts": verts.requires_grad_()}

    def closure(it):
        return render_loss(params["verts"], mesh["faces"])

    def remesh_at_200(state):
        if state.iteration == 199:
            v, f = remesh(params["verts"].detach(), mesh["faces"], 0.02)
            mesh["faces"] = f
            state.replace_params({"verts": v.requires_grad_()})

    result = fit(params, closure, callbacks=[remesh_at_200])
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from tqdm import tqdm

from lumigrad.optim import _build
from lumigrad.optim.checkpoint import (
    FIT_KEYS,
    CheckpointConfig,
    _set_rng_state,
    check_optimizer_matches,
    load_checkpoint,
    save_checkpoint,
)
from lumigrad.optim.convergence import Convergence

__all__ = ["fit", "LossTerms", "FitHistory", "FitState", "FitResult"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossTerms:
    """A closure's loss split into named terms.

    Args:
        total: scalar tensor that is differentiated (usually the weighted sum of the terms).
        terms: ``name -> value`` (scalar tensors or floats), recorded in the history only.

    Example::

        def closure(it):
            img = 10.0 * l1(render(params), target)
            reg = 0.1 * laplacian_energy(params["verts"], faces)
            return LossTerms(img + reg, {"image": img, "laplacian": reg})
    """

    total: torch.Tensor
    terms: Mapping[str, torch.Tensor | float] = field(default_factory=dict)


@dataclass
class FitHistory:
    """Per-iteration record of a fit; all lists are aligned with ``loss``.

    Attributes:
        loss: total loss at each iteration (evaluated before that iteration's step).
        terms: ``name -> values``; NaN where a term was not reported.
        lr: ``param name -> learning rate`` used by each iteration's step.
        time: seconds since the fit started (across resumes) at the end of each iteration.
    """

    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    lr: dict[str, list[float]] = field(default_factory=dict)
    time: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.loss)

    def append(self, loss: float, terms: Mapping[str, float], lrs: Mapping[str, float], t: float) -> None:
        """Add one iteration; new names are back-filled with NaN, missing ones get NaN."""
        n = len(self.loss)
        for store, values in ((self.terms, terms), (self.lr, lrs)):
            for name in values:
                if name not in store:
                    store[name] = [math.nan] * n
            for name, seq in store.items():
                seq.append(float(values.get(name, math.nan)))
        self.loss.append(float(loss))
        self.time.append(float(t))

    def to_dict(self) -> dict:
        """Plain nested lists/dicts (JSON- and checkpoint-safe copies)."""
        return {
            "loss": list(self.loss),
            "terms": {k: list(v) for k, v in self.terms.items()},
            "lr": {k: list(v) for k, v in self.lr.items()},
            "time": list(self.time),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "FitHistory":
        """Inverse of :meth:`to_dict`."""
        return cls(
            loss=list(d["loss"]),
            terms={k: list(v) for k, v in d["terms"].items()},
            lr={k: list(v) for k, v in d["lr"].items()},
            time=list(d["time"]),
        )


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        params: ``name -> tensor``, the optimised leaves (the caller's tensors
            unless a callback replaced them).
        stop_reason: ``"threshold" | "plateau" | "max_iters" | "callback"``.
        iterations: completed iterations, including those before a resume.
        best_loss: lowest loss seen, and ``best_iteration`` its iteration index.
        final_loss: loss of the last iteration (evaluated before its step).
        history: the :class:`FitHistory`.
        seconds: wall time of this call (``history.time`` spans resumes).
    """

    params: dict[str, torch.Tensor]
    stop_reason: str
    iterations: int
    best_loss: float
    best_iteration: int
    final_loss: float
    history: FitHistory
    seconds: float


@dataclass(eq=False)
class FitState:
    """What a callback sees after each iteration; it may stop the fit or swap parameters.

    Attributes:
        iteration: index of the iteration just completed (0-based).
        loss: its total loss; ``terms`` its named terms.
        params: ``name -> tensor`` (the dict passed to :func:`fit`, if one was).
        optimizer, scheduler: current objects (``scheduler`` may be ``None``).
        history: the running :class:`FitHistory`.
        best_loss, best_iteration: best loss so far and where.
        elapsed: seconds since the fit started (across resumes).
    """

    iteration: int
    loss: float
    terms: dict[str, float]
    params: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    history: FitHistory
    best_loss: float
    best_iteration: int
    elapsed: float
    _opt_factory: Callable = field(repr=False, default=None)
    _sched_factory: Callable | None = field(repr=False, default=None)
    _stop: bool = field(repr=False, default=False)

    def request_stop(self) -> None:
        """Stop after this iteration with ``stop_reason == "callback"``."""
        self._stop = True

    def replace_params(self, new_params: Mapping[str, torch.Tensor]) -> None:
        """Swap in new parameter tensors (e.g. after remeshing) and rebuild the optimizer.

        Args:
            new_params: the same names as ``params``, each a float leaf tensor with
                ``requires_grad=True``; sizes may differ from the old ones.

        The ``params`` dict is updated in place, so a closure reading from it sees
        the new tensors. Optimizer moment state is reset; the learning rates and
        the scheduler position are kept.
        """
        fn = "FitState.replace_params"
        _build.check_param_dict(fn, "new_params", new_params)
        if set(new_params) != set(self.params):
            raise ValueError(f"{fn}(): new_params must have the names {sorted(self.params)}, got {sorted(new_params)}")
        self.optimizer, self.scheduler = _build.rebuild(
            self._opt_factory, self._sched_factory, self.optimizer, self.scheduler, new_params
        )
        for name in list(self.params):
            self.params[name] = new_params[name]
        logger.info("fit(): parameters replaced at iteration %d; optimizer rebuilt", self.iteration)


def _split_loss(out, it: int) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
    if isinstance(out, LossTerms):
        total, terms = out.total, dict(out.terms)
    elif isinstance(out, torch.Tensor):
        total, terms = out, {}
    else:
        raise TypeError(
            f"fit(): closure must return a scalar Tensor or LossTerms, got {type(out).__name__} at iteration {it}"
        )
    if not isinstance(total, torch.Tensor) or total.numel() != 1:
        got = list(total.shape) if isinstance(total, torch.Tensor) else type(total).__name__
        raise ValueError(f"fit(): closure must return a scalar loss, got {got} at iteration {it}")
    if not total.requires_grad:
        raise ValueError(
            f"fit(): the loss returned at iteration {it} does not require grad; "
            "does the closure detach it or run under torch.no_grad()?"
        )
    return total.reshape(()), terms


def _host_values(total, terms, params):
    """Loss, term values and per-parameter gradient finiteness in one host sync."""
    dev = total.device
    vals = [total.detach().to(torch.float64)]
    term_names = list(terms)
    for name in term_names:
        v = terms[name]
        vals.append(torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v, dtype=torch.float64).reshape(()).to(dev))
    grad_names = [n for n, p in params.items() if p.grad is not None]
    vals += [torch.isfinite(params[n].grad).all().to(device=dev, dtype=torch.float64) for n in grad_names]
    # Whether each gradient has any non-zero entry (for the zero-gradient warning; same sync).
    vals += [(params[n].grad != 0).any().to(device=dev, dtype=torch.float64) for n in grad_names]
    host = torch.stack(vals).tolist()
    k = 1 + len(term_names)
    g = len(grad_names)
    nonzero = dict(zip(grad_names, host[k + g:]))
    return host[0], dict(zip(term_names, host[1:k])), dict(zip(grad_names, host[k:k + g])), grad_names, nonzero


def _warn_gradless(params, grad_names, nonzero, warned: set) -> None:
    """Warn once per parameter that gets no gradient or an all-zero one."""
    for name in params:
        if name in warned:
            continue
        if name not in grad_names:
            warned.add(name)
            logger.warning("fit(): parameter %r received no gradient: it does not reach the loss "
                           "(detached, unused, or a copy of it is used instead)", name)
        elif nonzero.get(name, 1.0) == 0.0:
            warned.add(name)
            logger.warning("fit(): parameter %r has an all-zero gradient: it is unused, or clamped where the clamp "
                           "has zero slope (e.g. GGX roughness < 0.02, metallic outside [0, 1]); it will not move",
                           name)


def fit(
    params: dict[str, torch.Tensor] | Iterable[torch.Tensor],
    closure: Callable[[int], torch.Tensor | LossTerms],
    *,
    optimizer: str | Callable[[list[dict]], torch.optim.Optimizer] = "adam",
    lr: float | Mapping[str, float] = 1e-2,
    schedule: str | Callable[[torch.optim.Optimizer], object] | None = None,
    stop: Convergence = Convergence(),
    callbacks: Sequence[Callable[[FitState], None]] = (),
    post_step: Callable[[int], None] | None = None,
    checkpoint: CheckpointConfig | None = None,
    resume: bool = False,
    progress: bool = False,
    desc: str = "fit",
) -> FitResult:
    """Minimise ``closure(it)`` over ``params`` with a torch optimizer.

    Each iteration: ``zero_grad``; ``loss = closure(it)``; ``backward``; check the
    loss and gradients are finite; ``optimizer.step()``; ``scheduler.step()``;
    ``post_step(it)`` under ``no_grad``; record history; run callbacks; save a
    checkpoint if due; test the stopping rule.

    Args:
        params: ``name -> leaf tensor`` (one param group per name; names key
            ``lr``, the history and checkpoints) or an iterable of leaf tensors
            (named ``"0"``, ``"1"``, ...). All must be float with ``requires_grad``.
        closure: ``closure(it) -> loss`` for the 0-based iteration ``it``; returns a
            scalar tensor or a :class:`LossTerms`. It must not call ``backward``.
        optimizer: ``"adam"``, ``"sgd"``, ``"adam_uniform"`` (for large-steps
            ``u`` parameters) or a factory ``groups -> torch.optim.Optimizer``
            (e.g. ``lambda g: torch.optim.AdamW(g, weight_decay=1e-2)``); each group
            carries ``"lr"`` and ``"name"``.
        lr: learning rate ``> 0``, or ``name -> lr`` covering every parameter.
        schedule: ``None``, ``"cosine"`` (to 0 over ``stop.max_iters``),
            ``"exponential"`` (100x decay over ``max_iters``), ``"step"`` (x0.1 every
            ``max_iters // 3``) or a factory ``optimizer -> lr_scheduler``;
            ``ReduceLROnPlateau`` is stepped with the loss.
        stop: the :class:`~lumigrad.optim.convergence.Convergence` rule.
        callbacks: ``cb(state: FitState)`` after each iteration; may call
            ``state.request_stop()`` or ``state.replace_params(...)``.
        post_step: ``post_step(it)`` after the step, under ``torch.no_grad()``
            (e.g. clamp or re-project parameters in place).
        checkpoint: save every ``checkpoint.every`` iterations and at the end.
        resume: continue from ``checkpoint.path`` if it exists (parameters,
            optimizer, scheduler, history, counters and RNG states are restored;
            the saved learning rates win over ``lr``); if the saved state already
            meets ``stop``, return at once. If the file does not exist the fit
            starts from scratch. Requires ``checkpoint``. Resuming after a
            topology change (``replace_params`` with new sizes) is not supported:
            the caller's other state (faces) is not in the checkpoint.
        progress: show a tqdm bar with the loss (the CLI turns it on for TTYs).
        desc: the bar's label.

    Returns:
        A :class:`FitResult`.

    Raises:
        TypeError, ValueError: invalid arguments or closure output.
        RuntimeError: a NaN/inf loss or gradient; raised before stepping, so the
            parameters hold that iteration's (last finite) values and the last
            checkpoint on disk is kept.

    Example::

        x = torch.zeros(3, requires_grad=True)
        target = torch.tensor([1.0, 2.0, 3.0])
        res = fit({"x": x}, lambda it: ((x - target) ** 2).sum(), lr=0.1,
                  stop=Convergence(max_iters=500, loss_threshold=1e-6))
        res.stop_reason   # "threshold"
    """
    named = _build.named_params(params)
    if not callable(closure):
        raise TypeError(f"fit(): closure must be callable closure(it) -> loss, got {type(closure).__name__}")
    if not isinstance(stop, Convergence):
        raise TypeError(f"fit(): stop must be a Convergence, got {type(stop).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, CheckpointConfig):
        raise TypeError(f"fit(): checkpoint must be a CheckpointConfig or None, got {type(checkpoint).__name__}")
    if resume and checkpoint is None:
        raise ValueError("fit(): resume=True needs checkpoint=CheckpointConfig(path) to resume from")
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"fit(): callbacks must be callables cb(state), got {type(cb).__name__}")
    if post_step is not None and not callable(post_step):
        raise TypeError(f"fit(): post_step must be callable post_step(it) or None, got {type(post_step).__name__}")
    names = list(named)
    lrs = _build.lr_per_name(lr, names)
    opt_factory = _build.optimizer_factory(optimizer)
    sched_factory = _build.scheduler_factory(schedule, stop.max_iters)

    ckpt = None
    if resume:
        if Path(checkpoint.path).exists():
            ckpt = load_checkpoint(checkpoint, restore_rng=False, required=FIT_KEYS)  # RNGs last, once all checks pass
        else:
            logger.info("fit(): no checkpoint at %s; starting from scratch", checkpoint.path)
    order = names
    if ckpt is not None:
        order = list(ckpt["param_names"])
        if set(order) != set(names):
            raise ValueError(f"fit(): the checkpoint has parameters {sorted(order)}, params has {sorted(names)}")
        with torch.no_grad():
            for n in order:
                saved, p = ckpt["params"][n], named[n]
                if saved.shape != p.shape:
                    raise ValueError(
                        f"fit(): checkpoint params[{n!r}] has shape {list(saved.shape)} but params[{n!r}] is "
                        f"{list(p.shape)}; resuming across a topology change (remesh) is not supported"
                    )
                p.copy_(saved)
    opt = _build.build_optimizer(opt_factory, _build.param_groups(named, lrs, order))
    sched = _build.build_scheduler(sched_factory, opt)
    history = FitHistory()
    start, best, best_it, since_best, elapsed0 = 0, math.inf, -1, 0, 0.0
    if ckpt is not None:
        check_optimizer_matches(checkpoint.path, ckpt, opt)
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None and ckpt["scheduler"] is not None:
            sched.load_state_dict(ckpt["scheduler"])
        history = FitHistory.from_dict(ckpt["history"])
        start, best, best_it, since_best = ckpt["iteration"], ckpt["best_loss"], ckpt["best_iteration"], ckpt["since_best"]
        elapsed0 = ckpt["elapsed"]
        _set_rng_state(ckpt["rng"], checkpoint.generators)
        logger.info("fit(): resumed from %s at iteration %d", checkpoint.path, start)

    state = FitState(
        iteration=start - 1, loss=history.loss[-1] if history.loss else math.nan, terms={}, params=named,
        optimizer=opt, scheduler=sched, history=history, best_loss=best, best_iteration=best_it,
        elapsed=elapsed0, _opt_factory=opt_factory, _sched_factory=sched_factory,
    )

    def payload(done: int, reason: str | None) -> dict:
        return {
            "iteration": done, "param_names": [g["name"] for g in state.optimizer.param_groups],
            "params": {n: t.detach() for n, t in state.params.items()},
            "optimizer": state.optimizer.state_dict(), "optimizer_class": type(state.optimizer).__name__,
            "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
            "history": history.to_dict(), "best_loss": state.best_loss, "best_iteration": state.best_iteration,
            "since_best": since_best, "elapsed": state.elapsed, "stop_reason": reason,
        }

    warned: set[str] = set()
    t0 = time.perf_counter()
    # A resumed fit that already meets the stopping rule (e.g. re-running a finished script) does nothing.
    reason = stop.reason(start, history.loss[-1], since_best) if ckpt is not None and history.loss else None
    it = start
    last_saved = start if ckpt is not None else None
    bar = tqdm(total=stop.max_iters, initial=start, desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        while reason is None:
            opt = state.optimizer
            opt.zero_grad(set_to_none=True)
            total, terms = _split_loss(closure(it), it)
            total.backward()
            loss, term_vals, grad_ok, grad_names, nonzero = _host_values(total, terms, state.params)
            if not math.isfinite(loss):
                raise RuntimeError(_nan_message(f"loss is {loss}", it, checkpoint, last_saved))
            bad = [n for n in grad_names if grad_ok[n] != 1.0]
            if bad:
                raise RuntimeError(
                    _nan_message(f"gradient of {bad} contains NaN or inf (loss {loss:.6g})", it, checkpoint, last_saved)
                )
            if it == start and not grad_names:
                logger.warning("fit(): no parameter received a gradient at iteration %d", it)
            elif it == start:
                _warn_gradless(state.params, grad_names, nonzero, warned)
            lrs_used = {g["name"]: float(g["lr"]) for g in opt.param_groups}
            opt.step()
            if state.scheduler is not None:
                if isinstance(state.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    state.scheduler.step(loss)
                else:
                    state.scheduler.step()
            if post_step is not None:
                with torch.no_grad():
                    post_step(it)

            if stop.improved(loss, state.best_loss):
                state.best_loss, state.best_iteration, since_best = loss, it, 0
            else:
                since_best += 1
            state.elapsed = elapsed0 + time.perf_counter() - t0
            history.append(loss, term_vals, lrs_used, state.elapsed)
            state.iteration, state.loss, state.terms = it, loss, term_vals
            for cb in callbacks:
                cb(state)
            it += 1
            reason = "callback" if state._stop else stop.reason(it, loss, since_best)
            if checkpoint is not None and reason is None and it % checkpoint.every == 0:
                save_checkpoint(checkpoint, payload(it, None))
                last_saved = it
            bar.set_postfix_str(f"loss={loss:.4g}", refresh=False)
            bar.update(1)
    finally:
        bar.close()

    if checkpoint is not None and it > start:
        save_checkpoint(checkpoint, payload(it, reason))
    seconds = time.perf_counter() - t0
    logger.info("fit(): stopped (%s) after %d iterations, best loss %.6g", reason, it, state.best_loss)
    return FitResult(
        params=dict(state.params), stop_reason=reason, iterations=it, best_loss=state.best_loss,
        best_iteration=state.best_iteration, final_loss=history.loss[-1] if history.loss else math.nan,
        history=history, seconds=seconds,
    )


def _nan_message(what: str, it: int, checkpoint: CheckpointConfig | None, last_saved: int | None) -> str:
    msg = f"fit(): {what} at iteration {it}; stopped before stepping, parameters hold iteration {it}'s values"
    if checkpoint is not None and last_saved is not None:
        msg += f"; the last good checkpoint ({checkpoint.path}, after {last_saved} iterations) is kept"
    elif checkpoint is not None:
        msg += f"; no checkpoint was written by this run ({checkpoint.path} untouched)"
    return msg + ". Lower the learning rate or check the closure for divisions by zero / sqrt(0)."
