"""fit() checkpoints: exact resume, crash safety, NaN keeps the last good one."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lumigrad.optim.checkpoint import CheckpointConfig, load_checkpoint
from lumigrad.optim.convergence import Convergence
from lumigrad.optim.fit import LossTerms, fit


class _Crash(Exception):
    pass


def _problem(gen: torch.Generator):
    """A noisy (stochastic) fit that draws from the global torch, numpy and python RNGs and ``gen``."""
    torch.manual_seed(0)
    params = {"w": torch.zeros(4, 3, requires_grad=True), "b": torch.zeros(3, requires_grad=True)}
    target_w = torch.linspace(-1, 1, 12).reshape(4, 3)

    def closure(it):
        x = torch.randn(16, 4)  # global torch RNG
        noise = torch.randn(16, 3, generator=gen) * 0.01  # explicit generator
        jitter = float(np.random.rand()) * 1e-3 + random.random() * 1e-3  # numpy + python RNG
        y = x @ target_w + 0.5 + noise
        pred = x @ params["w"] + params["b"]
        data = ((pred - y) ** 2).mean()
        reg = 1e-3 * (params["w"] ** 2).sum() + jitter * params["b"].sum()
        return LossTerms(data + reg, {"data": data, "reg": reg})

    return params, closure


def _run(tmp_path, *, max_iters=20, crash_at=None, resume=False):
    gen = torch.Generator().manual_seed(123)
    params, closure = _problem(gen)
    np.random.seed(1)
    random.seed(2)
    torch.manual_seed(3)

    def crash(state):
        if crash_at is not None and state.iteration == crash_at:
            raise _Crash()

    cfg = CheckpointConfig(tmp_path / "fit.pt", every=5, generators=(gen,))
    res = fit(params, closure, lr={"w": 0.05, "b": 0.02}, schedule="cosine", callbacks=[crash],
              stop=Convergence(max_iters=max_iters, patience=None), checkpoint=cfg, resume=resume)
    return params, res


def test_resume_after_crash_is_exact(tmp_path):
    straight_dir = tmp_path / "straight"
    p_ref, r_ref = _run(straight_dir)
    assert r_ref.iterations == 20

    crash_dir = tmp_path / "crash"
    with pytest.raises(_Crash):
        _run(crash_dir, crash_at=12)  # dies during iteration 12: last checkpoint is after 10
    saved = load_checkpoint(CheckpointConfig(crash_dir / "fit.pt"), restore_rng=False)
    assert saved["iteration"] == 10 and saved["stop_reason"] is None
    assert len(saved["history"]["loss"]) == 10

    # Fresh process state: the RNGs are reseeded and params rebuilt from scratch inside _run.
    p_res, r_res = _run(crash_dir, resume=True)
    assert r_res.iterations == 20 and r_res.stop_reason == "max_iters"
    for name in p_ref:
        torch.testing.assert_close(p_res[name], p_ref[name], atol=1e-6, rtol=0)
    assert r_res.history.loss == pytest.approx(r_ref.history.loss, abs=1e-6)
    assert r_res.history.terms["data"] == pytest.approx(r_ref.history.terms["data"], abs=1e-6)
    assert r_res.history.lr["w"] == pytest.approx(r_ref.history.lr["w"], rel=1e-9)
    assert r_res.best_loss == pytest.approx(r_ref.best_loss, abs=1e-6)
    # The run actually was stochastic (otherwise RNG restore would not be tested).
    assert len(set(round(v, 9) for v in r_ref.history.terms["reg"])) > 5


def test_resume_without_generator_restore_differs(tmp_path):
    """Sanity check of the test above: skipping the RNG restore changes the result."""
    p_ref, _ = _run(tmp_path / "a")
    with pytest.raises(_Crash):
        _run(tmp_path / "b", crash_at=12)
    gen = torch.Generator().manual_seed(999)  # a different generator state than the saved one
    params, closure = _problem(gen)
    cfg = CheckpointConfig(tmp_path / "b" / "fit.pt", every=5, generators=(gen,))
    ck = torch.load(cfg.path, weights_only=True)
    ck["rng"]["generators"] = [gen.get_state()]
    torch.save(ck, cfg.path)
    fit(params, closure, lr={"w": 0.05, "b": 0.02}, schedule="cosine",
        stop=Convergence(max_iters=20, patience=None), checkpoint=cfg, resume=True)
    assert not torch.allclose(params["w"], p_ref["w"], atol=1e-6, rtol=0)


def test_final_checkpoint_and_resume_when_done(tmp_path):
    _, r1 = _run(tmp_path)
    ck = load_checkpoint(CheckpointConfig(tmp_path / "fit.pt"), restore_rng=False)
    assert ck["iteration"] == 20 and ck["stop_reason"] == "max_iters"
    p2, r2 = _run(tmp_path, resume=True)  # nothing left to do
    assert r2.iterations == 20 and r2.stop_reason == "max_iters"
    assert len(r2.history.loss) == 20
    torch.testing.assert_close(p2["w"], ck["params"]["w"])


def test_resume_without_file_starts_fresh(tmp_path):
    _, res = _run(tmp_path / "new", max_iters=6, resume=True)
    assert res.iterations == 6 and (tmp_path / "new" / "fit.pt").exists()


def test_nan_keeps_last_good_checkpoint(tmp_path):
    x = torch.zeros(2, requires_grad=True)
    cfg = CheckpointConfig(tmp_path / "ck.pt", every=5)

    def closure(it):
        loss = ((x - 1) ** 2).sum()
        return loss + float("inf") if it == 7 else loss

    with pytest.raises(RuntimeError, match=r"iteration 7.*last good checkpoint .*after 5 iterations"):
        fit({"x": x}, closure, lr=0.1, stop=Convergence(max_iters=20), checkpoint=cfg)
    ck = load_checkpoint(cfg, restore_rng=False)
    assert ck["iteration"] == 5
    assert torch.isfinite(ck["params"]["x"]).all()
    assert list(tmp_path.iterdir()) == [tmp_path / "ck.pt"]  # no temporary files left


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    x = torch.zeros(2, requires_grad=True)
    cfg = CheckpointConfig(tmp_path / "ck.pt", every=2)
    fit({"x": x}, lambda it: ((x - 1) ** 2).sum(), stop=Convergence(max_iters=2), checkpoint=cfg)
    good = (tmp_path / "ck.pt").read_bytes()

    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        real_save({"partial": True}, f)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        fit({"x": x}, lambda it: ((x - 1) ** 2).sum(), stop=Convergence(max_iters=4), checkpoint=cfg)
    assert (tmp_path / "ck.pt").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_resume_rejects_topology_change(tmp_path):
    cfg = CheckpointConfig(tmp_path / "ck.pt", every=1)
    x = torch.zeros(3, requires_grad=True)
    fit({"x": x}, lambda it: (x**2).sum(), stop=Convergence(max_iters=2), checkpoint=cfg)
    y = torch.zeros(5, requires_grad=True)
    with pytest.raises(ValueError, match=r"has shape \[3\] but params\['x'\] is \[5\]"):
        fit({"x": y}, lambda it: (y**2).sum(), stop=Convergence(max_iters=4), checkpoint=cfg, resume=True)
    with pytest.raises(ValueError, match="checkpoint has parameters"):
        fit({"z": y}, lambda it: (y**2).sum(), stop=Convergence(max_iters=4), checkpoint=cfg, resume=True)


def test_checkpoint_config_validation(tmp_path):
    with pytest.raises(ValueError, match=r"CheckpointConfig\(\): every must be an int >= 1, got 0"):
        CheckpointConfig(tmp_path / "a.pt", every=0)
    with pytest.raises(TypeError, match="generators"):
        CheckpointConfig(tmp_path / "a.pt", generators=(1,))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    x = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        fit([x], lambda it: x.sum(), checkpoint=CheckpointConfig(tmp_path / "junk.pt"), resume=True)


def test_resume_of_converged_run_returns_at_once(tmp_path):
    cfg = CheckpointConfig(tmp_path / "ck.pt", every=100)
    x = torch.zeros(1, requires_grad=True)
    calls = []

    def closure(it):
        calls.append(it)
        return 0 * x.sum() + 1.0  # flat: plateau after `patience`

    r1 = fit([x], closure, stop=Convergence(max_iters=50, patience=3), checkpoint=cfg)
    assert r1.stop_reason == "plateau" and r1.iterations == 4
    calls.clear()
    r2 = fit([x], closure, stop=Convergence(max_iters=50, patience=3), checkpoint=cfg, resume=True)
    assert calls == [] and r2.stop_reason == "plateau" and r2.iterations == 4
    # A looser rule continues where the saved run stopped.
    r3 = fit([x], closure, stop=Convergence(max_iters=50, patience=6), checkpoint=cfg, resume=True)
    assert calls == [4, 5, 6] and r3.iterations == 7
