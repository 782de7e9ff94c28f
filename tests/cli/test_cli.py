"""The `lumigrad` command: a tiny demo run writes every promised output; errors exit non-zero."""
from __future__ import annotations

import json

import imageio.v3 as iio
import pytest

from lumigrad.cli.main import main
from lumigrad.scene import read_mesh


def test_demo_writes_all_outputs(tmp_path):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--views", "4", "--resolution", "48", "--iterations", "30", "--quiet"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations"] == 30
    # The starting sphere scores 0.067 on this setting; 30 iterations reach 0.052.
    assert 0 < metrics["chamfer_over_diagonal"] < 0.06
    assert metrics["final_loss"] < metrics["initial_loss"]
    mesh = read_mesh(out / "fitted.obj")
    assert mesh.num_faces > 100
    grid = iio.imread(out / "target_vs_fitted.png")
    assert grid.ndim == 3 and grid.std() > 0
    assert len(iio.imread(out / "turntable.gif", index=None)) > 1
    assert iio.imread(out / "loss.png").std() > 0


def test_bad_arguments_exit_nonzero(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code != 0
    for flag in ("--resolution", "--views", "--iterations"):
        with pytest.raises(SystemExit) as exc:
            main(["demo", "--out", str(tmp_path / "x"), flag, "0", "--quiet"])
        assert exc.value.code == 2, flag
