"""`lumigrad trace material --texture-res N`: the back wall's albedo as an unknown texture under global illumination."""
import json

import pytest
import torch

import lumigrad.render._path_fused as pf
from lumigrad.cli.main import main
from lumigrad.tasks.gi_material import CHECKER_COLOURS, GIMaterialConfig, run_gi_material, seen_texels, true_wall_texture


@pytest.fixture
def fused_calls(monkeypatch):
    """The answers of ``fused_path_ok`` during the test (one per ``render_trace``)."""
    real, seen = pf.fused_path_ok, []

    def spy(sc):
        seen.append(real(sc))
        return seen[-1]

    monkeypatch.setattr(pf, "fused_path_ok", spy)
    return seen


@pytest.mark.parametrize("bad", [-1, 1, 3, 257, True, 2.5, "8", None])
def test_texture_res_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=r"GIMaterialConfig\(\): texture_res must be 0 .* got"):
        GIMaterialConfig(texture_res=bad)


def test_texture_res_is_off_by_default():
    assert GIMaterialConfig().texture_res == 0
    assert GIMaterialConfig(texture_res=4).texture_res == 4


def test_cli_bad_texture_res_exits_2(tmp_path, capsys):
    assert main(["trace", "material", "--out", str(tmp_path / "o"), "--texture-res", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "lumigrad: error:" in err and "texture_res" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_true_wall_texture_is_a_four_colour_checker():
    for n in (4, 7, 16):
        assert true_wall_texture(n).shape == (n, n, 3)
    t = true_wall_texture(8)
    palette = torch.tensor(CHECKER_COLOURS)
    assert {tuple(c.tolist()) for c in t.reshape(-1, 3)} == {tuple(c.tolist()) for c in palette}
    torch.testing.assert_close(t[0, 0], t[1, 1])  # 2 x 2 texels per cell at n = 8
    assert not torch.equal(t[0, 0], t[0, 2]) and not torch.equal(t[0, 0], t[2, 0])


def test_seen_texels_leave_out_the_wall_behind_the_sphere():
    seen = seen_texels(GIMaterialConfig(resolution=16, texture_res=8))[..., 0]
    assert seen.shape == (8, 8)
    assert 0.75 < float(seen.mean()) < 1.0
    assert bool(seen[:4].all())  # the upper half of the wall is in plain view
    assert float(seen[5:, 3:6].mean()) < 0.5  # the sphere stands in front of the lower middle (x = 0.1)


def test_texture_fit_improves_in_the_fused_kernel(tmp_path, capsys, fused_calls):
    out = tmp_path / "tex"
    # 16^2 pixels, 4^2 texels, 40 steps at 2 spp, 2 bounces (about 1 s after the kernels' compile). Texture PSNR over
    # seeds 0-7: 11.83 dB at the start, 14.2-16.1 dB fitted (the 15 seen texels 11.67 -> 15.2-17.7 dB, mean abs texel
    # error 0.246 -> 0.11-0.14); with the texel gradient negated 3.9-4.4 dB, with its rows flipped 4.7-5.5 dB, zeroed
    # 11.83 dB, so the bounds below fail for a broken gradient.
    assert main(["trace", "material", "--out", str(out), "--resolution", "16", "--iterations", "40", "--spp", "2",
                 "--target-spp", "32", "--bounces", "2", "--texture-res", "4", "--quiet"]) == 0
    assert "texture_fitted.png" in capsys.readouterr().out
    # Every render (target, 40 steps, two evaluations, the seen-texel probe) ran in the fused path kernel.
    assert len(fused_calls) >= 40 and all(fused_calls)
    m = json.loads((out / "metrics.json").read_text())
    w = m["wall_texture"]
    assert w["texture_res"] == 4 and m["config"]["texture_res"] == 4
    assert w["final_psnr_db"] > w["start_psnr_db"] + 1.5
    assert w["final_psnr_seen_db"] > w["start_psnr_seen_db"] + 2.5
    assert w["final_mean_abs_error"] < 0.75 * w["start_mean_abs_error"]
    assert m["final_image_psnr_db"] > m["start_image_psnr_db"]
    assert m["true"]["wall_texture"] == "texture_true.png" and m["fitted"]["wall_texture"] == "texture_fitted.png"
    from lumigrad.scene.io import read_image

    torch.testing.assert_close(read_image(out / "texture_true.png"), true_wall_texture(4), atol=1 / 255, rtol=0)
    assert read_image(out / "texture_fitted.png").shape == (4, 4, 3)
    assert (out / "texture_comparison.png").stat().st_size > 0
    assert "back-wall albedo texture" in (out / "report.html").read_text()


def test_texture_fit_at_the_default_size(tmp_path):
    # 32^2 pixels, 8^2 texels, 40 steps (about 2 s). Measured over seeds 0-2: all texels 11.8 -> 17.9-18.1 dB, the
    # 55-56 seen ones 11.7 -> 21.6-22.1 dB; image PSNR 26.7-27.0 -> 32.0-33.6 dB.
    m = run_gi_material(tmp_path, GIMaterialConfig(texture_res=8))
    w = m["wall_texture"]
    assert 0.75 < w["seen_texel_fraction"] < 0.95
    assert w["final_psnr_seen_db"] > w["start_psnr_seen_db"] + 7.0
    assert w["final_psnr_db"] > w["start_psnr_db"] + 4.0
    assert m["final_error_max"]["roughness"] < m["start_error_max"]["roughness"]
