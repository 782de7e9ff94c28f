"""Small fully connected networks for neural fields."""
from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(in_dim: int, hidden: int, out_dim: int, n_hidden_layers: int = 1, out_activation: nn.Module | None = None):
    """``Linear -> ReLU`` x ``n_hidden_layers`` then ``Linear`` (and an optional output activation)."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_hidden_layers):
        layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)
