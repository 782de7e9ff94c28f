"""report.html is self-contained and renders with its images in headless Chromium."""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from lumigrad.tasks._runner import TaskOutput

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report(tmp_path):
    out = TaskOutput(tmp_path / "out", "fit test")
    img = torch.zeros(32, 32, 3)
    img[..., 0] = torch.linspace(0, 1, 32)
    img[8:24, 8:24] = torch.tensor([0.0, 0.0, 1.0])
    out.grid([[img, img.flip(0)]], ["a", "b"])
    out.loss_curve([1.0, 0.5, 0.25], "loss")
    out.turntable(torch.stack([img, img.flip(1)]))
    out.finish({"score": 0.5}, summary="test report")
    return out.dir / "report.html"


def test_report_is_self_contained(tmp_path):
    html = _report(tmp_path).read_text()
    assert html.count('src="data:image/') == 3
    assert "src=\"http" not in html and "<link" not in html  # nothing fetched from elsewhere
    assert "score" in html


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium')")
def test_report_renders_with_its_images_in_headless_chromium(tmp_path):
    import imageio.v3 as iio

    page = _report(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=900,1400", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    px = iio.imread(shot)[..., :3].astype(np.float64) / 255
    # The grid's saturated blue square and red ramp must show up: a page whose images fail to load is grey/white text.
    blue = (px[..., 2] > 0.8) & (px[..., 0] < 0.3) & (px[..., 1] < 0.3)
    red = (px[..., 0] > 0.7) & (px[..., 1] < 0.3) & (px[..., 2] < 0.3)
    assert blue.sum() > 100 and red.sum() > 20
