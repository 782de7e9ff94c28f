"""`lumigrad trace` commands and the shadow-fit task."""
import json

import pytest

from lumigrad.cli.main import main
from lumigrad.tasks.shadow import ShadowConfig, run_shadow_demo

SCENE = {
    "format": "lumigrad-scene", "version": 1,
    "camera": {"eye": [0, 1, 3], "target": [0, 0, 0], "width": 8, "height": 8},
    "shapes": [{"mesh": {"type": "icosphere", "level": 1}, "material": {"type": "lambert", "albedo": 0.8}}],
    "lights": [{"type": "point", "position": [1, 3, 2], "intensity": 10}],
    "integrator": {"spp": 1},
}


def test_trace_render_writes_outputs(tmp_path, capsys):
    scene = tmp_path / "s.json"
    scene.write_text(json.dumps(SCENE))
    assert main(["trace", "render", str(scene), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "image.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["spp"] == 1 and metrics["mean_radiance"] > 0


def test_trace_render_errors_exit_2(tmp_path, capsys):
    assert main(["trace", "render", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SCENE, "lights": [{"type": "spot"}]}))
    assert main(["trace", "render", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lumigrad: error:" in err and "lights[0]" in err and "Traceback" not in err


def test_shadow_config_rejects_bad_values():
    with pytest.raises(ValueError, match="iterations"):
        ShadowConfig(iterations=0)


@pytest.mark.slow
def test_shadow_fit_moves_light_towards_target(tmp_path):
    metrics = run_shadow_demo(tmp_path, ShadowConfig(resolution=32, iterations=30))
    assert metrics["final_error"] < 0.8 * metrics["start_error"]
    assert metrics["final_loss"] < 0.5 * metrics["first_loss"]
    for name in ("images.png", "loss.png", "metrics.json"):
        assert (tmp_path / name).exists()


def test_trace_material_fits_under_global_illumination(tmp_path, capsys):
    from lumigrad.tasks.gi_material import GIMaterialConfig

    out = tmp_path / "mat"
    assert main(["trace", "material", "--out", str(out), "--resolution", "12", "--iterations", "16", "--spp", "4",
                 "--target-spp", "16", "--bounces", "2", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (out / "report.html").stat().st_size > 0 and (out / "target_vs_result.png").stat().st_size > 0
    # The wall albedo moves most of the way to the truth (start error 0.3; seeds 0-9: 0.03-0.13). The base colour of
    # the small glossy block is poorly determined at 12^2 in 16 steps: seeds 0-9 ended at 0.03-0.43 (start 0.4;
    # 12 steps at 2 spp: 0.02-0.46 over 16 seeds with either sampler), so only "it did not run away" is asserted.
    # The image MSEs in the metrics are dominated by Monte Carlo noise at this size.
    assert m["final_error_max"]["wall"] < 0.5 * m["start_error_max"]["wall"]
    assert m["final_error_max"]["base"] < 1.25 * m["start_error_max"]["base"]
    with pytest.raises(ValueError, match="max_bounces"):
        GIMaterialConfig(max_bounces=0)
