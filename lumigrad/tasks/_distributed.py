"""Data-parallel helpers over ``torch.distributed`` (gloo on CPU, NCCL on GPU), launched by ``torchrun``.

Every rank draws the same global batch from the same seeded generator and
keeps its slice, so a run on W ranks computes the same update as one process
with the global batch; gradients are summed across ranks (the loss is already
normalised by the global batch size).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "rank_world", "rank_slice", "allreduce_grads", "allreduce_sum", "allreduce_tensors", "broadcast_float"]


def init_from_env() -> bool:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``); return whether distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_slice(n: int) -> slice:
    """This rank's contiguous share of ``n`` items."""
    r, w = rank_world()
    return slice(n * r // w, n * (r + 1) // w)


def allreduce_grads(params) -> None:
    """Sum ``p.grad`` over ranks (missing grads count as zeros)."""
    if rank_world()[1] == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def allreduce_sum(x: float) -> float:
    if rank_world()[1] == 1:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t)


def allreduce_tensors(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Element-wise sums over ranks of same-shaped tensors on every rank (new tensors; inputs untouched)."""
    out = tuple(t.clone() for t in tensors)
    if rank_world()[1] > 1:
        for t in out:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return out


def broadcast_float(x: float) -> float:
    """Rank 0's value everywhere (keeps wall-clock decisions identical across ranks)."""
    if rank_world()[1] == 1:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t)
