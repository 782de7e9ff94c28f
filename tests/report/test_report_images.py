"""report.images: PNG/JPG round trips, grids, GIFs, atomic writes."""
from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from lumigrad.report.images import image_grid, save_image, save_turntable_gif


def _ramp(h=6, w=8, c=3):
    img = torch.zeros(h, w, c)
    img[..., 0] = torch.linspace(0, 1, w)
    img[..., 1] = torch.linspace(0, 1, h)[:, None]
    if c > 2:
        img[..., 2] = 0.5
    return img


def test_save_png_round_trip_float_and_batch(tmp_path):
    img = _ramp()
    save_image(tmp_path / "a.png", img)
    back = iio.imread(tmp_path / "a.png")
    assert back.shape == (6, 8, 3) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.round(img.numpy() * 255).astype(np.uint8))
    assert back[0, -1, 0] == 255 and back[-1, 0, 1] == 255 and back[0, 0, 2] == 128  # row 0 = top
    save_image(tmp_path / "b.png", img[None])
    np.testing.assert_array_equal(iio.imread(tmp_path / "b.png"), back)


def test_save_png_uint8_grey_alpha_and_clipping(tmp_path):
    u8 = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    save_image(tmp_path / "u8.png", u8)
    np.testing.assert_array_equal(iio.imread(tmp_path / "u8.png"), u8)
    grey = torch.full((5, 7, 1), 0.2)
    save_image(tmp_path / "g.png", grey)
    g = iio.imread(tmp_path / "g.png")
    assert g.shape == (5, 7) and int(g[0, 0]) == 51
    rgba = torch.cat([_ramp(), torch.full((6, 8, 1), 0.25)], -1)
    save_image(tmp_path / "rgba.png", rgba)
    assert iio.imread(tmp_path / "rgba.png").shape == (6, 8, 4)
    save_image(tmp_path / "clip.png", torch.tensor([[[-1.0, 2.0, 0.5]]]))
    np.testing.assert_array_equal(iio.imread(tmp_path / "clip.png")[0, 0], [0, 255, 128])


def test_save_jpg_drops_alpha(tmp_path):
    rgba = torch.cat([torch.full((16, 16, 3), 0.5), torch.ones(16, 16, 1)], -1)
    save_image(tmp_path / "a.jpg", rgba)
    back = iio.imread(tmp_path / "a.jpg")
    assert back.shape == (16, 16, 3)
    assert np.abs(back.astype(int) - 128).max() <= 3  # lossy


def test_save_image_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"save_image\(\): path must end in one of"):
        save_image(tmp_path / "a.bmp", _ramp())
    with pytest.raises(ValueError, match=r"save_image\(\): img must be \[H, W, C\] or \[1, H, W, C\]"):
        save_image(tmp_path / "a.png", torch.rand(2, 4, 4, 3))
    with pytest.raises(ValueError, match=r"C in \(1, 3, 4\), got float32 \[4, 4, 2\]"):
        save_image(tmp_path / "a.png", torch.rand(4, 4, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        save_image(tmp_path / "a.png", torch.full((2, 2, 3), float("nan")))
    with pytest.raises(TypeError, match="must be a torch.Tensor or numpy array"):
        save_image(tmp_path / "a.png", [[0.0]])
    assert not list(tmp_path.iterdir())


def test_save_image_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    save_image(path, _ramp())
    good = path.read_bytes()

    def broken_write(uri, *a, **k):
        with open(uri, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(iio, "imwrite", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_image(path, torch.zeros(6, 8, 3))
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_image_grid_layout_and_labels():
    red = torch.zeros(4, 5, 3)
    red[..., 0] = 1
    grey = torch.full((3, 5, 1), 0.0)
    tall = torch.full((6, 2, 4), 0.5)
    grid = image_grid([[red, grey], [tall]], pad=2, pad_value=1.0)
    # Row heights 4, 6; column widths max(5, 2) = 5, 5.
    assert grid.shape == (2 + 4 + 2 + 6 + 2, 2 + 5 + 2 + 5 + 2, 3)
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid[2:6, 2:7], red)
    torch.testing.assert_close(grid[2:5, 9:14], torch.zeros(3, 5, 3))  # grey -> RGB
    torch.testing.assert_close(grid[8:14, 2:4], torch.full((6, 2, 3), 128 / 255))  # alpha dropped
    assert torch.all(grid[:2] == 1) and torch.all(grid[8:14, 9:14] == 1)  # pad and blank cell

    labelled = image_grid([[red, red]], labels=["target", "fitted"], pad=1)
    assert labelled.shape[0] > 1 + 4 + 1 and labelled.shape[1] == 1 + 5 + 1 + 5 + 1
    strip = labelled[1 : labelled.shape[0] - 5]
    assert strip.min() < 0.5  # some text was drawn
    torch.testing.assert_close(labelled[-5:-1, 1:6], red)


def test_image_grid_bad_inputs():
    with pytest.raises(ValueError, match=r"image_grid\(\): rows must be a non-empty list"):
        image_grid([])
    with pytest.raises(ValueError, match=r"image_grid\(\): labels must be a list of 2 column headers"):
        image_grid([[_ramp(), _ramp()]], labels=["a"])
    with pytest.raises(ValueError, match=r"rows\[0\]\[1\] must be \[H, W, C\]"):
        image_grid([[_ramp(), torch.rand(1, 4, 4, 3)]])


@pytest.mark.parametrize("as_list", [False, True])
def test_turntable_gif_frames_and_loop(tmp_path, as_list):
    n = 6
    frames = torch.stack([torch.full((8, 10, 3), i / (n - 1)) for i in range(n)])
    frames[:, 0, 0, 0] = 1.0  # some structure
    path = tmp_path / "turn.gif"
    save_turntable_gif(path, list(frames) if as_list else frames, fps=10)
    back = iio.imread(path, index=None)
    assert back.shape[0] == n and back.shape[1:3] == (8, 10)
    means = back[..., :3].reshape(n, -1).mean(1)
    assert np.all(np.diff(means) > 0)  # frame order preserved
    meta = iio.immeta(path)
    assert meta["loop"] == 0 and meta["duration"] == pytest.approx(100, abs=10)


def test_turntable_gif_bad_inputs_and_atomic(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"save_turntable_gif\(\): path must end in one of \['.gif'\]"):
        save_turntable_gif(tmp_path / "a.mp4", torch.rand(2, 4, 4, 3))
    with pytest.raises(ValueError, match="fps must be a float > 0"):
        save_turntable_gif(tmp_path / "a.gif", torch.rand(2, 4, 4, 3), fps=0)
    with pytest.raises(ValueError, match="all frames must have one shape"):
        save_turntable_gif(tmp_path / "a.gif", [torch.rand(4, 4, 3), torch.rand(5, 4, 3)])
    path = tmp_path / "keep.gif"
    save_turntable_gif(path, torch.rand(3, 4, 4, 3))
    good = path.read_bytes()
    monkeypatch.setattr(iio, "imwrite", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_turntable_gif(path, torch.rand(3, 4, 4, 3))
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["keep.gif"]
