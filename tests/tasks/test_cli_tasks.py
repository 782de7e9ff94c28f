"""`lumigrad synth` and `lumigrad fit ...` from the command line: outputs, report, configs, bad input."""
import base64
import json
import re

import pytest

from lumigrad.cli.main import main


def test_fit_help_lists_every_task(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for task in ("shape", "pose", "texture", "material", "lighting", "garment"):
        assert task in out
    with pytest.raises(SystemExit):
        main(["fit", "pose", "--help"])
    out = capsys.readouterr().out
    assert "--mesh" in out and "--starts" in out and "--config" in out


def test_synth_then_fit_material_writes_a_self_contained_report(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    assert main(["synth", "sphere", "--out", str(data), "--views", "2", "--resolution", "16"]) == 0
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("iterations = 3\nviews_per_step = 2\n")
    assert main(["fit", "material", str(data), "--out", str(out), "--config", str(cfg), "--iterations", "2", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 2  # the flag wins over the TOML file
    assert metrics["config"]["views_per_step"] == 2  # from the TOML file
    for name in ("material.json", "target_vs_result.png", "loss.png", "turntable.gif", "report.html"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    imgs = re.findall(r'src="data:image/(png|gif);base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) >= 3
    assert base64.b64decode(imgs[0][1])[:4] == b"\x89PNG"
    assert "roughness_error" in html


def test_bad_input_exits_2_and_keeps_existing_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": 1}')
    # missing dataset folder
    assert main(["fit", "shape", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    # a mask of the wrong size, named in the message
    data = tmp_path / "data"
    assert main(["synth", "sphere", "--out", str(data), "--views", "2", "--resolution", "16"]) == 0
    import numpy as np
    import imageio.v3 as iio
    iio.imwrite(data / "masks" / "001.png", np.zeros((8, 8), np.uint8))
    assert main(["fit", "shape", str(data), "--out", str(out), "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lumigrad: error:") and "001.png" in err and "8x8" in err
    # an unreadable config file, and an unknown key
    bad = tmp_path / "bad.toml"
    bad.write_text("iterations = [")
    assert main(["fit", "shape", str(data), "--out", str(out), "--config", str(bad)]) == 2
    bad.write_text("iteratons = 3")
    assert main(["fit", "shape", str(data), "--out", str(out), "--config", str(bad)]) == 2
    assert "iteratons" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text()) == {"old": 1}
