"""report.plots.save_loss_curve: a readable, non-blank PNG from several history layouts."""
from __future__ import annotations

import math

import imageio.v3 as iio
import numpy as np
import pytest

from lumigrad.optim.fit import FitHistory
from lumigrad.report.plots import save_loss_curve


def _history(n=50) -> FitHistory:
    h = FitHistory()
    for i in range(n):
        data, reg = 1.0 / (i + 1), 0.01 * math.exp(-i / 20)
        h.append(data + reg, {"data": data, "reg": reg}, {"verts": 1e-2}, 0.01 * i)
    return h


def _read(path):
    img = iio.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_loss_curve_png_from_fit_history(tmp_path):
    path = save_loss_curve(tmp_path / "loss.png", _history(), title="unit test")
    img = _read(path)
    rgb = img[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 10  # axes, text, three curves: not a blank canvas
    assert (rgb.min(1) < 50).mean() > 0.002  # dark pixels (the black total curve and text)


def test_loss_curve_accepts_dicts_lists_and_nonpositive_values(tmp_path):
    h = _history(20)
    a = _read(save_loss_curve(tmp_path / "a.png", h.to_dict()))
    b = _read(save_loss_curve(tmp_path / "b.png", {"loss": h.loss, "tv": h.terms["reg"]}))
    c = _read(save_loss_curve(tmp_path / "c.png", [3.0, 2.0, 1.0], log_y=False))
    d = _read(save_loss_curve(tmp_path / "d.png", {"total": [1.0, 0.0, -1.0, float("nan"), 0.5]}))  # symlog
    for img in (a, b, c, d):
        assert img[..., :3].std() > 5
    assert not np.array_equal(a, c)


def test_loss_curve_bad_inputs_and_atomic(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"save_loss_curve\(\): history is empty"):
        save_loss_curve(tmp_path / "x.png", [])
    with pytest.raises(TypeError, match=r"save_loss_curve\(\): history must be"):
        save_loss_curve(tmp_path / "x.png", 3.0)
    with pytest.raises(ValueError, match="path must end in one of"):
        save_loss_curve(tmp_path / "x.txt", [1.0])
    path = tmp_path / "keep.png"
    save_loss_curve(path, [1.0, 0.5])
    good = path.read_bytes()
    from matplotlib.figure import Figure

    def broken(self, fname, *a, **k):
        with open(fname, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save_loss_curve(path, [3.0, 1.0])
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["keep.png"]
