"""PhongMaterial / phong_specular follow PyTorch3D's lighting formulas."""
import math

import torch

from lumigrad.scene import AmbientLight, DirectionalLight
from lumigrad.shade import PhongMaterial, phong_specular, shade


def _p3d_phong(n, l, v, kd, ks, s, ka, amb, light):
    """pytorch3d.renderer.lighting diffuse/specular, written out."""
    n, l, v = (torch.nn.functional.normalize(x, dim=-1) for x in (n, l, v))
    cos = (n * l).sum(-1)
    diffuse = torch.relu(cos)[..., None] * light
    r = -l + 2 * cos[..., None] * n
    alpha = torch.relu((v * r).sum(-1)) * (cos > 0).double()
    spec = light * alpha[..., None] ** s
    return ka * amb + kd * diffuse + ks * spec


def test_phong_matches_pytorch3d_and_has_no_cosine_factor():
    g = torch.Generator().manual_seed(0)
    shape = (1, 4, 5)
    n = torch.randn(*shape, 3, generator=g, dtype=torch.float64)
    v = torch.randn(*shape, 3, generator=g, dtype=torch.float64)
    l = torch.tensor([0.2, 0.7, 0.5], dtype=torch.float64)
    light = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    amb = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    kd, ks, ka = torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    mat = PhongMaterial(diffuse=kd, specular=ks, shininess=torch.tensor([10.0], dtype=torch.float64), ambient=ka)
    lights = [AmbientLight(amb), DirectionalLight(l, color=light)]
    got = shade(mat, lights, points=torch.zeros(*shape, 3, dtype=torch.float64), normals=n, view_dirs=v)
    torch.testing.assert_close(got, _p3d_phong(n, l.expand_as(n), v, kd, ks, 10.0, ka, amb, light))
    # mirror configuration: the lobe is 1 at any incidence (Blinn-Phong with n.l would give cos).
    nn = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    ll = torch.tensor([math.sin(1.2), 0.0, math.cos(1.2)], dtype=torch.float64)
    vv = torch.tensor([-math.sin(1.2), 0.0, math.cos(1.2)], dtype=torch.float64)
    torch.testing.assert_close(phong_specular(nn, ll, vv, 64.0), torch.ones(1, dtype=torch.float64))


def test_phong_gradcheck():
    n = torch.tensor([[0.1, 0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    l = torch.tensor([[0.3, -0.1, 1.0]], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([[-0.2, 0.1, 1.0]], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[8.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(phong_specular, (n, l, v, s))
