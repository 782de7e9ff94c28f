"""report.metrics.save_metrics: JSON round trip of tensors / numpy values, atomic write."""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lumigrad.report.metrics import save_metrics


@dataclass
class _Summary:
    iterations: int
    loss: float


def test_metrics_round_trip(tmp_path):
    metrics = {
        "psnr": torch.tensor(31.25),
        "per_view": torch.tensor([1.5, 2.5], dtype=torch.float64),
        "count": np.int64(7),
        "ratio": np.float32(0.5),
        "matrix": np.eye(2),
        "flags": [True, None, "x"],
        "nested": {"a": (1, 2), 3: torch.tensor([[1, 2]], dtype=torch.int32)},
        "bad": float("nan"),
        "summary": _Summary(10, 0.25),
        "where": pathlib.Path("out/x.png"),
        "grad": torch.ones(2, requires_grad=True) * 2,
    }
    path = save_metrics(tmp_path / "sub" / "m.json", metrics)
    back = json.loads(path.read_text())
    assert back == {
        "psnr": 31.25,
        "per_view": [1.5, 2.5],
        "count": 7,
        "ratio": 0.5,
        "matrix": [[1.0, 0.0], [0.0, 1.0]],
        "flags": [True, None, "x"],
        "nested": {"a": [1, 2], "3": [[1, 2]]},
        "bad": None,
        "summary": {"iterations": 10, "loss": 0.25},
        "where": "out/x.png",
        "grad": [2.0, 2.0],
    }
    assert isinstance(back["count"], int)


def test_metrics_rejects_unknown_types_naming_the_key(tmp_path):
    with pytest.raises(TypeError, match=r"save_metrics\(\): metrics\['a'\]\[1\] has unsupported type object"):
        save_metrics(tmp_path / "m.json", {"a": [1, object()]})
    with pytest.raises(TypeError, match="metrics must be a dict"):
        save_metrics(tmp_path / "m.json", [1, 2])
    assert not list(tmp_path.iterdir())


def test_metrics_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    save_metrics(path, {"a": 1})
    good = path.read_text()

    def broken(self, text, *a, **k):
        with open(self, "w") as f:
            f.write(text[:3])
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        save_metrics(path, {"a": 2, "b": 3})
    monkeypatch.undo()
    assert path.read_text() == good and json.loads(good) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
