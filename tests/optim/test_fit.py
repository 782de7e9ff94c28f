"""fit(): loop mechanics, stopping rules, history, callbacks, validation."""
from __future__ import annotations

import math

import pytest
import torch

from lumigrad.optim.convergence import Convergence
from lumigrad.optim.fit import FitHistory, FitState, LossTerms, fit


def _quadratic(target=(1.0, 2.0, 3.0)):
    x = torch.zeros(3, requires_grad=True)
    t = torch.tensor(target)
    return {"x": x}, (lambda it: ((x - t) ** 2).sum()), t


# --- smoke / stopping rules -------------------------------------------------


def test_fit_reaches_threshold_and_moves_params_in_place():
    params, closure, t = _quadratic()
    x = params["x"]
    res = fit(params, closure, lr=0.1, stop=Convergence(max_iters=2000, loss_threshold=1e-8, patience=None))
    assert res.stop_reason == "threshold"
    assert res.final_loss <= 1e-8
    assert res.iterations == len(res.history.loss) < 2000
    assert res.params["x"] is x  # the caller's tensor was optimised, not a copy
    torch.testing.assert_close(x.detach(), t, atol=1e-3, rtol=0)


def test_fit_max_iters_counts_exactly():
    params, closure, _ = _quadratic()
    res = fit(params, closure, lr=1e-3, stop=Convergence(max_iters=7, patience=None))
    assert res.stop_reason == "max_iters"
    assert res.iterations == 7
    assert len(res.history.loss) == len(res.history.time) == len(res.history.lr["x"]) == 7
    assert res.history.loss == sorted(res.history.loss, reverse=True)  # Adam on a quadratic: monotone here
    assert res.best_loss == min(res.history.loss)
    assert res.history.time == sorted(res.history.time)


def test_fit_plateau_stops_after_patience():
    x = torch.zeros(1, requires_grad=True)
    # Loss flat at 1 after iteration 3: best stays at iteration 3, plateau after 5 more.
    res = fit([x], lambda it: (x * 0).sum() + max(10.0 - it, 1.0) + 0 * x.sum(),
              stop=Convergence(max_iters=100, patience=5, rel_improvement=1e-3))
    assert res.stop_reason == "plateau"
    assert res.best_iteration == 9
    assert res.iterations == 9 + 5 + 1


def test_fit_min_iters_delays_early_stop():
    params, closure, _ = _quadratic()
    res = fit(params, closure, lr=0.1, stop=Convergence(max_iters=50, loss_threshold=1e9, min_iters=12))
    assert res.stop_reason == "threshold"
    assert res.iterations == 12


def test_fit_plateau_ignores_tiny_improvements():
    x = torch.zeros(1, requires_grad=True)
    # Improves by 1e-6 relative per iteration, below rel_improvement=1e-3: plateau.
    res = fit([x], lambda it: 0 * x.sum() + (1.0 - 1e-6 * it), stop=Convergence(max_iters=100, patience=4, rel_improvement=1e-3))
    assert res.stop_reason == "plateau"
    assert res.iterations == 5


# --- LossTerms, history, lr ---------------------------------------------------


def test_loss_terms_recorded_in_history():
    x = torch.zeros(2, requires_grad=True)

    def closure(it):
        a = ((x - 1) ** 2).sum()
        b = 0.5 * (x**2).sum()
        terms = {"data": a, "reg": b}
        if it >= 2:
            terms["late"] = 7.0
        return LossTerms(a + b, terms)

    res = fit({"x": x}, closure, stop=Convergence(max_iters=4, patience=None))
    h = res.history
    assert set(h.terms) == {"data", "reg", "late"}
    for i in range(4):
        assert h.loss[i] == pytest.approx(h.terms["data"][i] + h.terms["reg"][i], rel=1e-6)
    assert math.isnan(h.terms["late"][0]) and math.isnan(h.terms["late"][1]) and h.terms["late"][2] == 7.0
    assert FitHistory.from_dict(h.to_dict()) == h


def test_per_param_lr_and_schedule_recorded():
    a = torch.zeros(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    res = fit({"a": a, "b": b}, lambda it: ((a - 1) ** 2 + (b - 1) ** 2).sum(), lr={"a": 0.1, "b": 0.01},
              schedule="cosine", stop=Convergence(max_iters=10, patience=None))
    assert res.history.lr["a"][0] == pytest.approx(0.1)
    assert res.history.lr["b"][0] == pytest.approx(0.01)
    assert res.history.lr["a"][5] < 0.1 * 0.8  # cosine has decayed
    assert res.history.lr["a"] == sorted(res.history.lr["a"], reverse=True)
    # Adam moves each param by about lr per step: a moved ~10x further than b.
    assert a.item() > 5 * b.item() > 0


@pytest.mark.parametrize("schedule", ["exponential", "step"])
def test_named_schedules_decay(schedule):
    params, closure, _ = _quadratic()
    res = fit(params, closure, lr=0.1, schedule=schedule, stop=Convergence(max_iters=9, patience=None))
    lrs = res.history.lr["x"]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] < 0.1 * 0.5


@pytest.mark.parametrize("optimizer", ["sgd", "adam_uniform", lambda g: torch.optim.AdamW(g, weight_decay=0.0)])
def test_other_optimizers_converge(optimizer):
    params, closure, _ = _quadratic()
    res = fit(params, closure, optimizer=optimizer, lr=0.05, stop=Convergence(max_iters=300, patience=None))
    assert res.final_loss < 0.1 * res.history.loss[0]


# --- callbacks, post_step, replace_params -------------------------------------


def test_callback_can_stop_and_sees_state():
    params, closure, _ = _quadratic()
    seen = []

    def cb(state: FitState):
        seen.append((state.iteration, state.loss, len(state.history)))
        if state.iteration == 4:
            state.request_stop()

    res = fit(params, closure, callbacks=[cb], stop=Convergence(max_iters=100))
    assert res.stop_reason == "callback" and res.iterations == 5
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4]
    assert [s[2] for s in seen] == [1, 2, 3, 4, 5]
    assert seen[-1][1] == res.final_loss


def test_post_step_runs_under_no_grad_and_projects():
    x = torch.zeros(3, requires_grad=True)
    calls = []

    def project(it):
        calls.append(torch.is_grad_enabled())
        x.clamp_(max=0.5)  # in-place on a leaf: only legal under no_grad

    fit([x], lambda it: ((x - 1) ** 2).sum(), lr=0.2, post_step=project, stop=Convergence(max_iters=20))
    assert calls == [False] * 20
    assert torch.all(x <= 0.5) and x.max().item() == pytest.approx(0.5)


def test_replace_params_rebuilds_optimizer_with_new_sizes():
    params = {"v": torch.zeros(2, requires_grad=True)}

    def closure(it):
        return ((params["v"] - 1.0) ** 2).sum()

    def grow(state: FitState):
        if state.iteration == 9:
            old = state.params["v"].detach()
            state.replace_params({"v": torch.cat([old, old]).requires_grad_()})

    res = fit(params, closure, lr=0.05, schedule="cosine", callbacks=[grow], stop=Convergence(max_iters=40, patience=None))
    assert params["v"].shape == (4,) and res.params["v"] is params["v"]
    assert res.iterations == 40
    # The schedule position survived the rebuild: lr keeps decaying smoothly.
    lrs = res.history.lr["v"]
    assert lrs == sorted(lrs, reverse=True) and lrs[10] < lrs[9]
    assert params["v"].min().item() > 0.5  # all four entries were optimised


def test_replace_params_rejects_wrong_names():
    params, closure, _ = _quadratic()

    def bad(state):
        state.replace_params({"y": torch.zeros(3, requires_grad=True)})

    with pytest.raises(ValueError, match=r"replace_params\(\): new_params must have the names"):
        fit(params, closure, callbacks=[bad], stop=Convergence(max_iters=3))


# --- NaN handling -------------------------------------------------------------


def test_nan_loss_raises_before_stepping():
    x = torch.ones(2, requires_grad=True)

    def closure(it):
        loss = ((x - 2) ** 2).sum()
        return loss * float("nan") if it == 3 else loss

    snapshots = []
    with pytest.raises(RuntimeError, match=r"fit\(\): loss is nan at iteration 3"):
        fit({"x": x}, closure, lr=0.1, callbacks=[lambda s: snapshots.append(x.detach().clone())],
            stop=Convergence(max_iters=10))
    assert len(snapshots) == 3
    assert torch.equal(x.detach(), snapshots[-1])  # iteration 3 did not step
    assert x.grad is not None and not torch.isfinite(x.grad).all()


def test_nan_gradient_raises_naming_param():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient of \['x'\] contains NaN or inf .* iteration 0"):
        fit({"x": x}, lambda it: torch.sqrt(x).sum(), stop=Convergence(max_iters=3))
    assert torch.equal(x.detach(), torch.zeros(2))  # never stepped


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(lr=-1.0), ValueError, r"fit\(\): lr must be > 0, got -1.0"),
        (dict(lr=0.0), ValueError, r"lr must be > 0"),
        (dict(lr={"x": 0.1, "z": 0.1}), ValueError, r"lr dict must have exactly"),
        (dict(optimizer="adamz"), ValueError, r"optimizer must be one of"),
        (dict(schedule="linear"), ValueError, r"schedule must be None, one of"),
        (dict(resume=True), ValueError, r"resume=True needs checkpoint"),
        (dict(stop=5), TypeError, r"stop must be a Convergence"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    params, closure, _ = _quadratic()
    with pytest.raises(err, match=match):
        fit(params, closure, **kwargs)


def test_optimizer_instance_rejected():
    params, closure, _ = _quadratic()
    with pytest.raises(TypeError, match="got an Optimizer instance"):
        fit(params, closure, optimizer=torch.optim.Adam([params["x"]]))


def test_bad_params():
    with pytest.raises(ValueError, match=r"fit\(\): params is empty"):
        fit({}, lambda it: torch.zeros(()))
    with pytest.raises(ValueError, match=r"params\['0'\] does not require grad"):
        fit([torch.zeros(3)], lambda it: torch.zeros(()))
    leaf = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="not a leaf"):
        fit({"a": leaf * 2}, lambda it: torch.zeros(()))
    with pytest.raises(ValueError, match="floating-point"):
        fit([torch.zeros(3, dtype=torch.int64)], lambda it: torch.zeros(()))
    with pytest.raises(TypeError, match="single Tensor"):
        fit(leaf, lambda it: leaf.sum())


def test_bad_closure_output():
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(TypeError, match="closure must return a scalar Tensor or LossTerms"):
        fit([x], lambda it: 1.0)
    with pytest.raises(ValueError, match=r"scalar loss, got \[3\]"):
        fit([x], lambda it: x * 2)
    with pytest.raises(ValueError, match="does not require grad"):
        fit([x], lambda it: x.detach().sum())


def test_convergence_validation():
    with pytest.raises(ValueError, match=r"Convergence\(\): max_iters must be an int >= 1"):
        Convergence(max_iters=0)
    with pytest.raises(ValueError, match="patience"):
        Convergence(patience=0)
    with pytest.raises(ValueError, match="rel_improvement"):
        Convergence(rel_improvement=-1)


def test_progress_bar_writes_to_stderr(capsys):
    params, closure, _ = _quadratic()
    fit(params, closure, progress=True, desc="unit", stop=Convergence(max_iters=3))
    err = capsys.readouterr().err
    assert "unit" in err and "loss=" in err
    fit(params, closure, progress=False, stop=Convergence(max_iters=3))
    assert capsys.readouterr().err == ""
