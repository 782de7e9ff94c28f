"""fit() warns once about parameters without a gradient, or with an all-zero (clamped) one."""
import logging

import torch

from lumigrad.optim import Convergence, fit


def test_warns_for_unused_and_clamped_parameters(caplog):
    used = torch.zeros(2, requires_grad=True)
    unused = torch.zeros(2, requires_grad=True)
    clamped = torch.tensor([5.0], requires_grad=True)  # metallic-like, clamped to [0, 1]
    target = torch.tensor([1.0, 2.0])

    def closure(it):
        return ((used - target) ** 2).sum() + clamped.clamp(0.0, 1.0).sum()

    with caplog.at_level(logging.WARNING, logger="lumigrad.optim.fit"):
        fit({"used": used, "unused": unused, "clamped": clamped}, closure, lr=0.1, stop=Convergence(max_iters=5, patience=None))
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("'unused'" in m and "no gradient" in m for m in msgs) == 1
    assert sum("'clamped'" in m and "all-zero" in m for m in msgs) == 1
    assert not any("'used'" in m for m in msgs)
