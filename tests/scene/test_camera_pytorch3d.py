"""Camera.from_pytorch3d / to_pytorch3d against PyTorch3D's formulas, written out independently here."""
import math

import pytest
import torch

from lumigrad.scene import Camera


def _p3d_screen(points, R, T, H, W, focal, pp, ortho=False):
    """PyTorch3D: X_view = X @ R + T; NDC x = fx X/Z + px (+X left, +Y up, shorter side in [-1, 1]);
    screen pixel (from the top-left corner, +0.5 centres) = (W/2 - s x_ndc, H/2 - s y_ndc), s = min(H, W)/2."""
    xv = points @ R + T
    z = torch.ones_like(xv[:, 2]) if ortho else xv[:, 2]
    x_ndc = focal[0] * xv[:, 0] / z + pp[0]
    y_ndc = focal[1] * xv[:, 1] / z + pp[1]
    s = min(H, W) / 2
    return torch.stack([W / 2 - s * x_ndc, H / 2 - s * y_ndc], -1)


def _look_at_p3d(dist, elev_deg, azim_deg):
    """pytorch3d.renderer.look_at_view_transform(dist, elev, azim) (world +Y up), re-derived."""
    e, a = math.radians(elev_deg), math.radians(azim_deg)
    C = torch.tensor([dist * math.cos(e) * math.sin(a), dist * math.sin(e), dist * math.cos(e) * math.cos(a)], dtype=torch.float64)
    z = torch.nn.functional.normalize(-C, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), z), dim=0)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z], dim=1)  # columns are the view axes in world coordinates
    T = -(C @ R)
    return R, T


def test_canonical_look_at_puts_world_x_on_the_right():
    R, T = _look_at_p3d(2.7, 0.0, 0.0)
    torch.testing.assert_close(R, torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)))
    cam = Camera.from_pytorch3d(R, T, image_size=(64, 64), fov_deg=60.0)
    px = cam.project_to_pixels(torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0]], dtype=torch.float64))[0]
    torch.testing.assert_close(px[0], torch.tensor([32.0, 32.0], dtype=torch.float64))
    assert px[1, 0] > 32 and px[2, 1] < 32  # +X right, +Y up in the image
    assert float((cam.world_to_cam[0, :3, :3] @ torch.zeros(3, dtype=torch.float64) + cam.world_to_cam[0, :3, 3])[2]) > 0


@pytest.mark.parametrize("H,W", [(48, 64), (64, 40)])
def test_ndc_perspective_and_orthographic_match_pytorch3d_formulas(H, W):
    R, T = _look_at_p3d(3.0, 25.0, 40.0)
    pts = torch.randn(20, 3, dtype=torch.float64) * 0.5
    focal, pp = (1.7, 1.9), (0.1, -0.05)
    for kind, ortho in (("perspective", False), ("orthographic", True)):
        cam = Camera.from_pytorch3d(R, T, image_size=(H, W), camera_type=kind, focal_length=torch.tensor([focal], dtype=torch.float64),
                                    principal_point=torch.tensor([pp], dtype=torch.float64))
        torch.testing.assert_close(cam.project_to_pixels(pts)[0], _p3d_screen(pts, R, T, H, W, focal, pp, ortho))
        back = cam.to_pytorch3d()
        torch.testing.assert_close(back.R[0], R)
        torch.testing.assert_close(back.T[0], T)
        torch.testing.assert_close(back.focal_length[0], torch.tensor(focal, dtype=torch.float64))
        torch.testing.assert_close(back.principal_point[0], torch.tensor(pp, dtype=torch.float64))
        assert back.orthographic == ortho
    # FoV perspective = NDC focal 1/tan(fov/2); FoV orthographic on [-1, 1] = NDC focal 1 (scale_xyz scales it).
    fov = Camera.from_pytorch3d(R, T, image_size=(H, W), fov_deg=50.0)
    f = 1 / math.tan(math.radians(25.0))
    torch.testing.assert_close(fov.project_to_pixels(pts)[0], _p3d_screen(pts, R, T, H, W, (f, f), (0.0, 0.0)))
    ortho = Camera.from_pytorch3d(R, T, image_size=(H, W), camera_type="fov_orthographic", scale_xyz=(2.0, 2.0, 2.0))
    torch.testing.assert_close(ortho.project_to_pixels(pts)[0], _p3d_screen(pts, R, T, H, W, (2.0, 2.0), (0.0, 0.0), True))


def test_screen_space_and_errors():
    R, T = _look_at_p3d(3.0, 10.0, 10.0)
    cam = Camera.from_pytorch3d(R, T, image_size=(30, 40), camera_type="perspective", focal_length=torch.tensor([[50.0, 55.0]], dtype=torch.float64),
                                principal_point=torch.tensor([[21.0, 14.0]], dtype=torch.float64), in_ndc=False)
    torch.testing.assert_close(cam.K[0], torch.tensor([[50.0, 0, 21.0], [0, 55.0, 14.0], [0, 0, 1]], dtype=torch.float64))
    with pytest.raises(ValueError, match="camera_type"):
        Camera.from_pytorch3d(R, T, image_size=(30, 40), camera_type="fisheye")
    with pytest.raises(TypeError, match="R must be"):
        Camera.from_pytorch3d(R.numpy(), T, image_size=(30, 40))
