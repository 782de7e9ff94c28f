"""Transforms, clip matrices, NDC <-> pixel maps and OpenCV <-> OpenGL converters."""
import math

import pytest
import torch

from lumigrad.geometry.conventions import (
    focal_to_fov,
    fov_to_focal,
    opencv_to_opengl_cam_to_world,
    opencv_to_opengl_world_to_cam,
    opencv_world_to_cam_to_opengl_cam_to_world,
    opengl_cam_to_world_to_opencv_world_to_cam,
    opengl_to_opencv_cam_to_world,
    opengl_to_opencv_world_to_cam,
)
from lumigrad.geometry.projection import (
    intrinsics_from_fov,
    ndc_to_pixel,
    orthographic_clip_from_K,
    perspective_clip_from_K,
    pixel_to_ndc,
)
from lumigrad.geometry.rotations import quaternion_to_matrix
from lumigrad.geometry.transforms import compose_rigid, invert_rigid, look_at_world_to_cam, transform_points

D = torch.float64
W, H = 64, 48
K = torch.tensor([[50.0, 1.5, 30.0], [0.0, 55.0, 20.0], [0.0, 0.0, 1.0]], dtype=D)


def _rigid(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return compose_rigid(quaternion_to_matrix(torch.randn(n, 4, dtype=D, generator=g)), torch.randn(n, 3, dtype=D, generator=g))


def test_perspective_clip_matches_K_and_depth_range():
    pts = torch.tensor([[0.3, -0.2, 2.0], [-1.0, 0.5, 7.0], [0.0, 0.0, 0.5], [0.0, 0.0, 10.0]], dtype=D)
    clip = transform_points(perspective_clip_from_K(K, W, H, 0.5, 10.0), pts)[0]
    assert torch.allclose(clip[:, 3], pts[:, 2])  # w = camera z
    ndc = clip[:, :3] / clip[:, 3:]
    x, y, z = pts.unbind(-1)
    u = K[0, 0] * x / z + K[0, 1] * y / z + K[0, 2]
    v = K[1, 1] * y / z + K[1, 2]
    torch.testing.assert_close(ndc_to_pixel(ndc[:, :2], W, H), torch.stack([u, v], -1))
    torch.testing.assert_close(ndc[2:, 2], torch.tensor([-1.0, 1.0], dtype=D))  # near -> -1, far -> +1


def test_orthographic_clip():
    pts = torch.tensor([[0.3, -0.2, 1.0], [0.0, 0.0, 3.0]], dtype=D)
    clip = transform_points(orthographic_clip_from_K(K, W, H, 1.0, 3.0), pts)[0]
    assert torch.all(clip[:, 3] == 1)
    u = K[0, 0] * pts[:, 0] + K[0, 1] * pts[:, 1] + K[0, 2]
    v = K[1, 1] * pts[:, 1] + K[1, 2]
    torch.testing.assert_close(ndc_to_pixel(clip[:, :2], W, H), torch.stack([u, v], -1))
    torch.testing.assert_close(clip[:, 2], torch.tensor([-1.0, 1.0], dtype=D))


def test_pixel_ndc_maps():
    # Pixel (row 0, col 0) centre is at the top-left: x_ndc = -1 + 1/W, y_ndc = 1 - 1/H.
    c = pixel_to_ndc(torch.tensor([0.5, 0.5], dtype=D), W, H)
    torch.testing.assert_close(c, torch.tensor([-1 + 1 / W, 1 - 1 / H], dtype=D))
    uv = torch.rand(20, 2, dtype=D) * torch.tensor([W, H], dtype=D)
    torch.testing.assert_close(ndc_to_pixel(pixel_to_ndc(uv, W, H), W, H), uv)


def test_intrinsics_from_fov():
    k = intrinsics_from_fov(90.0, W, H)
    assert k.shape == (1, 3, 3) and k.dtype == torch.float32
    torch.testing.assert_close(k[0, 1, 1], torch.tensor(H / 2.0))
    torch.testing.assert_close(k[0, :2, 2], torch.tensor([W / 2.0, H / 2.0]))
    fov = torch.tensor([30.0, 60.0], dtype=D, requires_grad=True)
    kb = intrinsics_from_fov(fov, W, H)
    assert kb.shape == (2, 3, 3)
    kb[:, 0, 0].sum().backward()
    assert fov.grad is not None and (fov.grad < 0).all()  # wider fov -> shorter focal
    with pytest.raises(ValueError, match="fov_y_deg"):
        intrinsics_from_fov(180.0, W, H)


def test_fov_focal_round_trip():
    assert fov_to_focal(90.0, 200) == pytest.approx(100.0)
    assert focal_to_fov(fov_to_focal(39.6, 800), 800) == pytest.approx(39.6)
    t = fov_to_focal(torch.tensor(60.0, dtype=D), 100)
    torch.testing.assert_close(focal_to_fov(t, 100), torch.tensor(60.0, dtype=D))


def test_transform_points_shapes_and_grad():
    m = _rigid(3)
    p = torch.randn(5, 3, dtype=D)
    out = transform_points(m, p)
    assert out.shape == (3, 5, 4)
    ref = torch.einsum("bij,vj->bvi", m, torch.cat([p, torch.ones(5, 1, dtype=D)], -1))
    torch.testing.assert_close(out, ref)
    assert transform_points(m[0], torch.randn(3, 5, 3, dtype=D)).shape == (3, 5, 4)
    assert torch.autograd.gradcheck(transform_points, (m.requires_grad_(), p.requires_grad_()))
    with pytest.raises(ValueError, match="batch sizes"):
        transform_points(m, torch.randn(2, 5, 3, dtype=D))
    with pytest.raises(ValueError, match="points"):
        transform_points(m, torch.randn(5, 2, dtype=D))


def test_invert_rigid():
    m = _rigid(4)
    torch.testing.assert_close(invert_rigid(m) @ m, torch.eye(4, dtype=D).expand(4, 4, 4))


def test_look_at_world_to_cam():
    eye = torch.tensor([[1.0, 2.0, 5.0], [-3.0, 0.5, 0.0]], dtype=D)
    target = torch.tensor([0.2, 0.1, -0.3], dtype=D)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=D)
    w2c = look_at_world_to_cam(eye, target, up)
    assert w2c.shape == (2, 4, 4)
    rot = w2c[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=D).expand(2, 3, 3))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(2, dtype=D))
    # Eye -> camera origin; target on +z; world up has negative camera y (image up).
    torch.testing.assert_close(transform_points(w2c, eye[:, None])[:, 0, :3], torch.zeros(2, 3, dtype=D), atol=1e-12, rtol=0)
    t_cam = transform_points(w2c, target[None])[:, 0, :3]
    torch.testing.assert_close(t_cam[:, :2], torch.zeros(2, 2, dtype=D), atol=1e-12, rtol=0)
    assert (t_cam[:, 2] > 0).all()
    assert ((rot @ up)[:, 1] < 0).all()


def test_opencv_opengl_converters():
    c2w_gl = _rigid(3).inverse()
    c2w_cv = opengl_to_opencv_cam_to_world(c2w_gl)
    torch.testing.assert_close(opencv_to_opengl_cam_to_world(c2w_cv), c2w_gl)
    # Converting twice in the same direction is the identity too (F @ F = I).
    torch.testing.assert_close(opengl_to_opencv_cam_to_world(c2w_cv), c2w_gl)
    # OpenGL camera looks along its -z: that is OpenCV +z; OpenGL +y (up) is OpenCV -y.
    torch.testing.assert_close(c2w_cv[:, :3, 2], -c2w_gl[:, :3, 2])
    torch.testing.assert_close(c2w_cv[:, :3, 1], -c2w_gl[:, :3, 1])
    w2c_cv = opengl_cam_to_world_to_opencv_world_to_cam(c2w_gl)
    torch.testing.assert_close(w2c_cv, torch.linalg.inv(c2w_cv))
    torch.testing.assert_close(opencv_world_to_cam_to_opengl_cam_to_world(w2c_cv), c2w_gl)
    w2c_gl = torch.linalg.inv(c2w_gl)
    torch.testing.assert_close(opengl_to_opencv_world_to_cam(w2c_gl), w2c_cv)
    torch.testing.assert_close(opencv_to_opengl_world_to_cam(w2c_cv), w2c_gl)


def test_clip_matrix_gradcheck_and_validation():
    k = K.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda kk: perspective_clip_from_K(kk, W, H, 0.1, 10.0), (k,))
    assert torch.autograd.gradcheck(lambda kk: orthographic_clip_from_K(kk, W, H, 0.1, 10.0), (k,))
    with pytest.raises(ValueError, match="near"):
        perspective_clip_from_K(K, W, H, 0.0, 10.0)
    with pytest.raises(ValueError, match="near"):
        perspective_clip_from_K(K, W, H, 2.0, 1.0)
    with pytest.raises(ValueError, match="width and height"):
        perspective_clip_from_K(K, 0, H, 0.1, 1.0)
    with pytest.raises(ValueError, match="K must be"):
        perspective_clip_from_K(K[:2], W, H, 0.1, 1.0)
    assert math.isfinite(float(perspective_clip_from_K(K.float(), W, H, 0.1, 1.0).sum()))
