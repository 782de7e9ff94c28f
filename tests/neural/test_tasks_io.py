"""Tasks, CLI, dataset and PLY input checks on tiny data."""
import json

import numpy as np
import pytest
import torch

from lumigrad.cli.main import main
from lumigrad.fields.gaussians import GaussianModel
from lumigrad.tasks.nerf import NerfConfig, extract_mesh, load_nerf, render_nerf_outputs, train_nerf
from lumigrad.tasks.nerf_data import load_dataset, load_split
from lumigrad.tasks.splat import SplatConfig, train_splat

_TINY_NERF = dict(occ_resolution=8, init_rays=64, samples_per_batch=2048, max_rays=256, n_levels=4,
                  log2_table_size=10, max_res=32, hidden=16, eval_views_periodic=1, eval_every=2, checkpoint_every=1)


def test_dataset_holdout_and_bad_inputs(tiny_dataset, tmp_path):
    root = tiny_dataset(tmp_path / "ok", n=9)
    train, ev, src = load_dataset(root)
    assert train.images.shape == (7, 16, 16, 4) and ev.images.shape == (2, 16, 16, 4) and src == "train[::8]"
    # missing frame
    bad = tiny_dataset(tmp_path / "missing", n=3)
    (bad / "train" / "r_1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"frame 1: image .*r_1\.png is missing"):
        load_split(bad, "train")
    # inconsistent image sizes
    mixed = tiny_dataset(tmp_path / "mixed", n=3, sizes=[16, 16, 20])
    with pytest.raises(ValueError, match=r"r_2\.png is 20x20 but .*transforms_train\.json says 16x16"):
        load_split(mixed, "train")
    # camera without intrinsics
    nofov = tiny_dataset(tmp_path / "nofov", n=2, drop_fov=True)
    with pytest.raises(ValueError, match=r"transforms_train\.json frame 0 has no focal length"):
        load_split(nofov, "train")
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_split(tmp_path / "nope", "train")


def test_ply_roundtrip_and_bad_files(tiny_dataset, tmp_path):
    g = torch.Generator().manual_seed(0)
    m = GaussianModel.random_init(5, 1.0, g)
    with torch.no_grad():
        m.sh_rest.copy_(torch.randn(5, 15, 3, generator=g))
    p = m.save_ply(tmp_path / "g.ply")
    header = p.read_bytes()[:2000].decode("ascii", "replace")
    assert "property float f_rest_44" in header and "property float rot_3" in header
    back = GaussianModel.load_ply(p)
    for a, b in zip(m.parameters(), back.parameters()):
        torch.testing.assert_close(a, b)
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.ply is not a PLY file"):
        GaussianModel.load_ply(empty)
    zero = tmp_path / "zero.ply"
    zero.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\nend_header\n")
    with pytest.raises(ValueError, match=r"zero\.ply has no Gaussians"):
        GaussianModel.load_ply(zero)
    with torch.no_grad():
        m.means[2, 1] = float("nan")
    m.save_ply(tmp_path / "nan.ply")
    with pytest.raises(ValueError, match=r"nan\.ply has NaN or inf values in means \(1 of 5"):
        GaussianModel.load_ply(tmp_path / "nan.ply")
    with pytest.raises(FileNotFoundError, match="no such file"):
        GaussianModel.load_ply(tmp_path / "none.ply")


def test_nerf_task_interrupt_and_resume(tiny_dataset, tmp_path):
    root = tiny_dataset(tmp_path / "data", n=6)
    out = tmp_path / "run"

    def stop_at_2(step, total, info):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_nerf(root, out, NerfConfig(iterations=4, **_TINY_NERF), progress=stop_at_2)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 2
    steps = []
    m = train_nerf(root, out, NerfConfig(iterations=4, **_TINY_NERF), resume=True,
                   progress=lambda s, n, i: steps.append(s))
    assert steps == [3, 4] and m["iterations"] == 4
    for f in ("metrics.json", "psnr.png", "eval_grid.png"):
        assert (out / f).is_file()
    assert json.loads((out / "metrics.json").read_text())["psnr"] > 0
    # render: held-out views + turntable, and a marching-cubes OBJ at a level inside the field's range
    res = render_nerf_outputs(out / "checkpoint.pt", tmp_path / "r", turntable_frames=2)
    assert (tmp_path / "r" / "turntable.gif").is_file() and res["views"] == 1
    field, grid, _, _ = load_nerf(out / "checkpoint.pt")
    grid.occupied.fill_(True)
    with torch.no_grad():
        level = float(field.density(torch.rand(4096, 3) * 2 - 1).median())
    mesh = extract_mesh(field, grid, tmp_path / "r" / "mesh.obj", resolution=24, level=level)
    assert len(mesh.faces) > 0 and (tmp_path / "r" / "mesh.obj").read_text().startswith(("v ", "#"))


def test_splat_task_and_cli(tiny_dataset, tmp_path, capsys):
    root = tiny_dataset(tmp_path / "data", n=6)
    out = tmp_path / "run"
    m = train_splat(root, out, SplatConfig(iterations=3, init_points=200, eval_every=2, checkpoint_every=1))
    assert m["iterations"] == 3 and (out / "gaussians.ply").is_file()
    assert len(GaussianModel.load_ply(out / "gaussians.ply")) == m["gaussians"]
    rc = main(["splat", "render", str(out / "checkpoint.pt"), "--out", str(tmp_path / "r"), "--frames", "2", "--quiet"])
    assert rc == 0 and (tmp_path / "r" / "turntable.gif").is_file()
    # bad input through the CLI: a clear one-line error and exit code 2
    (root / "train" / "r_3.png").unlink()
    rc = main(["splat", "train", str(root), "--out", str(tmp_path / "x"), "--iterations", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("lumigrad: error: ") and "r_3.png is missing" in err
    rc = main(["nerf", "render", str(tmp_path / "none.pt"), "--quiet"])
    assert rc == 2 and "no such checkpoint" in capsys.readouterr().err
