"""Datasets: nerfstudio layout round trip, NeuS/IDR cameras, errors naming the file; the real DTU capture (slow)."""
import numpy as np
import pytest
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render import RasterSettings, render_mesh
from lumigrad.scene import AmbientLight, Camera, LambertMaterial, Mesh, write_image
from lumigrad.scene.datasets import load_dataset, write_dataset
from lumigrad.scene.rigs import orbit_cameras
from conftest import SHARED_DATA


def _render(n=3, res=16):
    cams = orbit_cameras(n, res)
    out = render_mesh(Mesh(*icosphere(1)), cams, LambertMaterial(0.7), [AmbientLight(torch.ones(3))], RasterSettings(visibility="hard"))
    return cams, out.image, out.alpha


def test_nerfstudio_round_trip(tmp_path):
    cams, img, alpha = _render()
    write_dataset(tmp_path, img, cams, alpha, ground_truth={"scene": "ball"})
    ds = load_dataset(tmp_path)
    assert len(ds) == 3 and ds.layout == "nerf" and ds.ground_truth == {"scene": "ball"}
    torch.testing.assert_close(ds.images, img, atol=1 / 255, rtol=0)
    torch.testing.assert_close(ds.masks, alpha, atol=1 / 255, rtol=0)
    pts = torch.randn(5, 3)
    torch.testing.assert_close(ds.camera.project_to_pixels(pts), cams.project_to_pixels(pts), atol=1e-4, rtol=1e-4)
    assert len(load_dataset(tmp_path, max_views=2)) == 2


def test_neus_layout_cameras_match(tmp_path):
    cams, img, alpha = _render(2, 16)
    (tmp_path / "image").mkdir()
    (tmp_path / "mask").mkdir()
    data = {}
    scale = np.diag([2.0, 2.0, 2.0, 1.0])
    scale[:3, 3] = [0.1, -0.2, 0.3]
    for i in range(2):
        K = cams.K[i].double().numpy().copy()
        K[:2, 2] -= 0.5  # NeuS: integer pixel centres
        Rt = cams.world_to_cam[i].double().numpy()[:3]
        P = np.eye(4)
        P[:3] = K @ Rt
        data[f"world_mat_{i}"] = P @ np.linalg.inv(scale)  # NeuS uses world_mat @ scale_mat
        data[f"scale_mat_{i}"] = scale
        write_image(tmp_path / "image" / f"{i:06d}.png", img[i])
        write_image(tmp_path / "mask" / f"{i:03d}.png", alpha[i].expand(-1, -1, 3))
    np.savez(tmp_path / "cameras_sphere.npz", **data)
    ds = load_dataset(tmp_path)
    assert ds.layout == "neus" and ds.masks.shape == (2, 16, 16, 1)
    pts = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(ds.camera.to(dtype=torch.float64).project_to_pixels(pts), cams.to(dtype=torch.float64).project_to_pixels(pts),
                               atol=1e-6, rtol=1e-6)
    # mismatched counts name the files
    (tmp_path / "image" / "000002.png").write_bytes((tmp_path / "image" / "000000.png").read_bytes())
    with pytest.raises(ValueError, match="2 cameras but .*image has 3 images"):
        load_dataset(tmp_path)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither transforms.json"):
        load_dataset(tmp_path)
    cams, img, alpha = _render(2)
    write_dataset(tmp_path, img, cams, alpha)
    (tmp_path / "images" / "001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="001.png"):
        load_dataset(tmp_path)
    (tmp_path / "images" / "001.png").unlink()
    with pytest.raises(FileNotFoundError, match="001.png"):
        load_dataset(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "dtu_scan65_neus_400x300").is_dir(), reason="shared DTU scan 65 data not present")
def test_dtu_scan65_loads_and_the_sphere_centre_lands_in_every_mask():
    ds = load_dataset(SHARED_DATA / "dtu_scan65_neus_400x300")
    assert len(ds) == 49 and ds.images.shape == (49, 300, 400, 3) and ds.masks.shape == (49, 300, 400, 1)
    px = ds.camera.project_to_pixels(torch.zeros(1, 3))[:, 0]
    inside = [bool(ds.masks[i, int(px[i, 1]), int(px[i, 0]), 0] > 0.5) for i in range(49)]
    assert all(inside)
    # and matches the file's own projection (P @ scale_mat, +0.5 pixel centres)
    d = np.load(SHARED_DATA / "dtu_scan65_neus_400x300" / "cameras_sphere_400x300.npz")
    P = d["world_mat_5"] @ d["scale_mat_5"]
    X = np.array([0.2, -0.1, 0.3, 1.0])
    uvw = P[:3] @ X
    want = torch.tensor(uvw[:2] / uvw[2] + 0.5, dtype=torch.float32)
    torch.testing.assert_close(ds.camera[5].project_to_pixels(torch.tensor([[0.2, -0.1, 0.3]]))[0, 0], want, atol=1e-3, rtol=0)
