"""lumigrad's ray tracer vs Mitsuba 3 (llvm_ad_rgb): images and gradients (slow; needs mitsuba + libLLVM 19).

Run: ``pytest -m slow tests/validation``. Images: relative MSE of lumigrad
(64 spp) against Mitsuba's ``direct`` integrator (256 spp). Gradients: per-pixel
``dI/dtheta`` by forward-mode AD in both (Mitsuba: ``direct_projective``), and
central finite differences of high-spp lumigrad renders; compared on 4x4 pixel
blocks (see ``mitsuba_scenes.compare``): <= 10 % error on the gradient-image norm
and the same sign on >= 90 % of significant blocks.

Mitsuba's projective integrator finds no indirect silhouettes for point and
directional lights (it warns "No valid indirect silhouette samples"), so for
derivatives carried by hard shadow boundaries lumigrad is checked against finite
differences only. A point light's position is not differentiable in Mitsuba 3,
so light-position gradients are compared with Mitsuba's finite differences.
"""
import numpy as np
import pytest
from mitsuba_scenes import (
    SCENES, TraceSettings, build, compare, lumigrad_fd_image, lumigrad_grad_image, mitsuba_fd_image, mitsuba_grad_image,
)

from lumigrad._mitsuba import import_mitsuba, mitsuba_scene
from lumigrad.render.path import render_trace

pytestmark = pytest.mark.slow
RES = 32


@pytest.fixture(scope="module")
def mitsuba():
    """``(mi, dr)``; imported lazily so the default (non-slow) collection never loads Dr.Jit."""
    try:
        return import_mitsuba("llvm_ad_rgb")
    except ImportError as e:
        pytest.skip(f"Mitsuba unavailable: {e}")


@pytest.mark.parametrize("name", SCENES)
def test_images_agree(mitsuba, name):
    MI, _ = mitsuba
    shapes, cam, lights = build(name, RES)
    ref = np.asarray(MI.render(mitsuba_scene(MI, shapes, cam, lights, spp=256), spp=256, seed=0))
    img = render_trace(shapes, cam, lights, TraceSettings(spp=64, boundary="none")).image[0].numpy()
    rel_mse = ((img - ref) ** 2).mean() / (ref**2).mean()
    assert rel_mse < 2e-3, rel_mse
    assert abs(img.mean() / ref.mean() - 1) < 0.02


@pytest.mark.parametrize("name, param, vs_mitsuba", [
    ("diffuse_sphere", "sphere_dx", True),
    ("diffuse_sphere", "light_dx", True),
    ("shadow_plane", "albedo_d", True),
    ("shadow_plane", "sphere_dx", False),
    ("shadow_plane", "light_dx", False),
])
def test_gradients_agree(mitsuba, name, param, vs_mitsuba):
    MI, DR = mitsuba
    gl = lumigrad_grad_image(name, param, RES, TraceSettings(spp=64, edge_samples=4 * RES * RES))
    fd = lumigrad_fd_image(name, param, RES, TraceSettings(spp=256, boundary="none"), 0.02)
    c = compare(gl, fd)
    assert c["norm_rel_err"] <= 0.10 and c["sign_agree"] >= 0.9, c
    if vs_mitsuba:
        if param == "light_dx":  # not a differentiable parameter in Mitsuba: its finite differences
            gm = mitsuba_fd_image(MI, name, param, RES, 1024, 0.02)
        else:
            integ = {"type": "direct_projective", "sppc": 64, "sppp": 64, "sppi": 0}
            gm = mitsuba_grad_image(MI, DR, name, param, RES, 64, integ)
        c = compare(gl, gm)
        assert c["norm_rel_err"] <= 0.10 and c["sign_agree"] >= 0.9, c
