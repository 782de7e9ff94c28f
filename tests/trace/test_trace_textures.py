"""render_trace with textured materials (TextureParam): agreement with render_mesh, UV orientation, gradients."""
import pytest
import torch

from lumigrad.render.path import TraceSettings, render_trace
from lumigrad.render.raster import render_mesh
from lumigrad.scene import Mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
from lumigrad.scene.trace_types import MirrorMaterial, Shape

from trace_scenes import DT, smooth_texture, textured_plane_scene


def _t(*x):
    return torch.tensor(x, dtype=DT)


def _lights():
    return [PointLight(_t(0.5, 2.0, 1.0), intensity=6.0), DirectionalLight(_t(-1.0, 0.5, 1.0), intensity=0.5),
            AmbientLight(_t(0.05, 0.05, 0.05))]


def _materials():
    alb = TextureParam(smooth_texture(4, 4, 3), filter_mode="linear")
    rough = TextureParam(smooth_texture(3, 5, 1, seed=1), filter_mode="linear", boundary_mode="clamp")
    return {"lambert": LambertMaterial(alb), "lambert-1ch": LambertMaterial(TextureParam(smooth_texture(4, 4, 1),
                                                                                          filter_mode="linear")),
            "ggx": GGXMaterial(alb, rough, 0.3)}


@pytest.mark.parametrize("kind", ["lambert", "lambert-1ch", "ggx"])  # fused direct path (Lambert), general (GGX)
def test_textured_matches_render_mesh_without_shadows(kind):
    material = _materials()[kind]
    mesh, cam = textured_plane_scene(res=20)
    ref, interior, d_mean = _matches_render_mesh(mesh, cam, material)
    # The texture matters: the same material with its mean texel differs far more.
    flat = type(material)(**{k: (v.texture.reshape(-1, v.channels).mean(0) if isinstance(v, TextureParam) else v)
                             for k, v in vars(material).items()})
    d_flat = (render_mesh(mesh, cam, flat, _lights()).image - ref.image).abs()[interior]
    assert float(d_flat.mean()) > 5 * d_mean


def _matches_render_mesh(mesh, cam, material):
    """render_trace (one bounce, no shadows) agrees with render_mesh on covered pixels; returns
    ``(render_mesh output, interior mask, mean abs difference)``."""
    out = render_trace([Shape(mesh, material)], cam, _lights(), TraceSettings(spp=16, shadows=False, boundary="none"))
    ref = render_mesh(mesh, cam, material, _lights())
    interior = (ref.alpha[..., 0] == 1) & (out.alpha[..., 0] == 1)
    assert interior.sum() > 300
    d = (out.image - ref.image).abs()[interior]
    peak = float(ref.image.max())
    assert float(d.max()) < 0.05 * peak and float(d.mean()) < 0.006 * peak
    return ref, interior, float(d.mean())


def test_uv_orientation_v_up():
    """uv (0, 0) is the bottom-left of the texture image: row 0 (the top) is at v = 1, the far edge z = -1."""
    mesh, cam = textured_plane_scene(res=16)
    tex = torch.zeros(2, 2, 3, dtype=DT)
    tex[0] = 1.0  # top row bright
    mat = LambertMaterial(TextureParam(tex, filter_mode="nearest"))
    img = render_trace([Shape(mesh, mat)], cam, [AmbientLight(_t(1.0, 1.0, 1.0))],
                       TraceSettings(spp=1, boundary="none")).image[0, ..., 0]
    # The camera looks from +z towards -z: the far edge is at the top of the image.
    assert float(img[:4].mean()) == 1.0 and float(img[-4:].mean()) == 0.0


def _fd(fn, x, h=1e-6):
    with torch.no_grad():
        return (fn(x + h) - fn(x - h)) / (2 * h)


@pytest.mark.parametrize("fused", [True, False])
def test_texel_albedo_and_vertex_gradients_match_fd(fused, monkeypatch):
    import lumigrad.render.path as path

    if not fused:
        monkeypatch.setattr(path, "_fused_ok", lambda sc: False)
    mesh0, cam = textured_plane_scene(res=8)
    w = torch.rand(1, 8, 8, 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    tex0 = smooth_texture(3, 3, 3)
    light = [PointLight(_t(0.5, 2.0, 1.0), intensity=6.0), AmbientLight(_t(0.1, 0.1, 0.1))]
    st = TraceSettings(spp=2, boundary="none", decorrelate=False)

    def loss(tex, shift):
        mesh = Mesh(mesh0.verts + shift, mesh0.faces, uvs=mesh0.uvs)
        mat = LambertMaterial(TextureParam(tex, filter_mode="linear"))
        return (render_trace([Shape(mesh, mat)], cam, light, st).image * w).sum()

    tex = tex0.clone().requires_grad_(True)
    shift = torch.zeros(3, dtype=DT, requires_grad=True)
    g_tex, g_shift = torch.autograd.grad(loss(tex, shift), [tex, shift])
    for idx in [(0, 0, 0), (1, 1, 1), (2, 1, 2), (1, 2, 0)]:
        e = torch.zeros_like(tex0)
        e[idx] = 1.0
        fd = _fd(lambda h: loss(tex0 + h * e, torch.zeros(3, dtype=DT)), 0.0)
        assert abs(float(fd)) > 1e-3
        torch.testing.assert_close(g_tex[idx], fd, rtol=1e-5, atol=1e-8)
    # Sliding the plane in x moves the texture under the pixels (through the barycentrics) and the light.
    for k in (0, 2):
        e = torch.zeros(3, dtype=DT)
        e[k] = 1.0
        fd = _fd(lambda h: loss(tex0, h * e), 0.0)
        torch.testing.assert_close(g_shift[k], fd, rtol=1e-4, atol=1e-7)


def test_ggx_roughness_and_base_color_texture_gradients_match_fd():
    mesh, cam = textured_plane_scene(res=8)
    w = torch.rand(1, 8, 8, 3, dtype=DT, generator=torch.Generator().manual_seed(4))
    base0, rough0 = smooth_texture(2, 2, 3), smooth_texture(2, 3, 1, seed=2)
    st = TraceSettings(spp=2, boundary="none", decorrelate=False)

    def loss(base, rough):
        mat = GGXMaterial(TextureParam(base, filter_mode="linear"), TextureParam(rough, filter_mode="linear"), 0.2)
        return (render_trace([Shape(mesh, mat)], cam, [PointLight(_t(0.0, 1.5, -0.3), intensity=4.0)], st).image
                * w).sum()

    base, rough = base0.clone().requires_grad_(True), rough0.clone().requires_grad_(True)
    gb, gr = torch.autograd.grad(loss(base, rough), [base, rough])
    for g, x0, which in ((gb, base0, 0), (gr, rough0, 1)):
        for idx in [(0, 0, 0), (1, 1, 0)]:
            e = torch.zeros_like(x0)
            e[idx] = 1.0
            fd = _fd(lambda h: loss(base0 + h * e, rough0) if which == 0 else loss(base0, rough0 + h * e), 0.0)
            assert abs(float(fd)) > 1e-4
            torch.testing.assert_close(g[idx], fd, rtol=1e-5, atol=1e-8)


def test_path_tracing_texture_two_bounces_gradient_matches_fd():
    """A textured floor next to a lit white wall: 2-bounce paths; texel gradients of a fixed-seed render vs FD."""
    mesh, cam = textured_plane_scene(res=8)
    wall_v = _t(-1, 0, -1) + torch.tensor([[0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 0]], dtype=DT)
    wall = Mesh(wall_v, torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32))
    lamp = Mesh(_t(-0.3, 1.5, 0.0) + torch.tensor([[0, 0, 0], [0.6, 0, 0], [0, 0, 0.6], [0.6, 0, 0.6]], dtype=DT),
                torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32))  # faces -y
    w = torch.rand(1, 8, 8, 3, dtype=DT, generator=torch.Generator().manual_seed(5))
    tex0 = smooth_texture(2, 2, 3)
    st = TraceSettings(spp=4, max_bounces=2, boundary="none", decorrelate=False)

    def render(tex):
        shapes = [Shape(mesh, LambertMaterial(TextureParam(tex, filter_mode="linear"))), Shape(wall, LambertMaterial(0.8)),
                  Shape(lamp, LambertMaterial(0.0), emission=_t(5.0, 5.0, 5.0))]
        return render_trace(shapes, cam, [], st).image

    tex = tex0.clone().requires_grad_(True)
    img = render(tex)
    one = render_trace([Shape(mesh, LambertMaterial(TextureParam(tex0, filter_mode="linear"))),
                        Shape(wall, LambertMaterial(0.8)), Shape(lamp, LambertMaterial(0.0), emission=_t(5.0, 5.0, 5.0))],
                       cam, [], TraceSettings(spp=4, max_bounces=1, boundary="none")).image
    assert float((img.detach() - one).mean()) > 1e-3  # the second bounce adds light
    (g,) = torch.autograd.grad((img * w).sum(), [tex])
    for idx in [(0, 0, 0), (1, 0, 1), (1, 1, 2)]:
        e = torch.zeros_like(tex0)
        e[idx] = 1.0
        fd = _fd(lambda h: (render(tex0 + h * e) * w).sum(), 0.0)
        assert abs(float(fd)) > 1e-4
        torch.testing.assert_close(g[idx], fd, rtol=1e-5, atol=1e-8)


def test_textured_bad_inputs():
    mesh, cam = textured_plane_scene(res=4)
    tex = TextureParam(smooth_texture())
    bare = Mesh(mesh.verts, mesh.faces)
    with pytest.raises(ValueError, match="no uvs"):
        Shape(bare, LambertMaterial(tex))
    s = Shape(mesh, LambertMaterial(tex))
    s.mesh = bare  # bypasses Shape's check: render_trace names the shape
    with pytest.raises(ValueError, match=r"render_trace\(\): shapes\[1\]\.material\.albedo .*no uvs"):
        render_trace([Shape(mesh), s], cam)
    with pytest.raises(TypeError, match="MirrorMaterial"):
        Shape(mesh, MirrorMaterial(tex))
    with pytest.raises(ValueError, match="one texture for all views"):
        render_trace([Shape(mesh, LambertMaterial(TextureParam(smooth_texture()[None].expand(2, -1, -1, -1))))], cam)
    with pytest.raises(ValueError, match="dtype"):
        render_trace([Shape(mesh, LambertMaterial(TextureParam(smooth_texture().float())))], cam)
    with pytest.raises(ValueError, match="channels"):
        GGXMaterial(0.5, TextureParam(smooth_texture()))  # roughness: 1 channel


def test_textured_fused_generic_and_replay_agree(monkeypatch):
    """With a shadowing sphere and edge-sampled boundaries: the fused and general paths, with and without path
    replay, give the same image and the same texel and vertex gradients."""
    import lumigrad.render.path as path
    from lumigrad.geometry.primitives import icosphere

    mesh, cam = textured_plane_scene(res=12)
    v, f = icosphere(1, dtype=DT)
    ball = Shape(Mesh(v * 0.3 + _t(0.0, 0.3, 0.0), f))
    tex = smooth_texture().requires_grad_(True)
    verts = mesh.verts.clone().requires_grad_(True)
    out = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(path, "_fused_ok", lambda sc: False)
        for replay in (False, True):
            shapes = [Shape(Mesh(verts, mesh.faces, uvs=mesh.uvs), LambertMaterial(TextureParam(tex))), ball]
            img = render_trace(shapes, cam, [PointLight(_t(0.3, 2.0, 0.5), intensity=5.0)],
                               TraceSettings(spp=2, replay=replay, chunk_rays=97)).image
            out.append((img.detach(), torch.autograd.grad((img ** 2).sum(), [tex, verts])))
    for img, grads in out[1:]:
        torch.testing.assert_close(img, out[0][0], rtol=1e-9, atol=1e-12)
        for a, b in zip(grads, out[0][1]):
            assert float(b.abs().max()) > 0
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def _tinted_plane(res, tex, vcol_seed=5):
    """The textured plane with a mesh texture ``tex`` and smooth per-vertex colours (the mesh's own tint)."""
    mesh, cam = textured_plane_scene(res=res, resolution=3)
    vc = 0.4 + 0.6 * torch.rand(mesh.verts.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(vcol_seed))
    return Mesh(mesh.verts, mesh.faces, uvs=mesh.uvs, vert_colors=vc, texture=tex), cam


@pytest.mark.parametrize("kind", ["lambert", "ggx"])  # fused direct path (Lambert), general path (GGX)
def test_mesh_texture_and_vertex_colours_tint_like_render_mesh(kind):
    """A mesh's own texture and vertex colours multiply the BRDF, as they multiply render_mesh's shaded colour."""
    mesh, cam = _tinted_plane(20, smooth_texture(4, 4, 3, seed=2))
    material = LambertMaterial(_t(0.8, 0.7, 0.9)) if kind == "lambert" else GGXMaterial(_t(0.8, 0.7, 0.9), 0.4, 0.2)
    ref, interior, d_mean = _matches_render_mesh(mesh, cam, material)
    plain = render_mesh(Mesh(mesh.verts, mesh.faces, uvs=mesh.uvs), cam, material, _lights()).image
    assert float((plain - ref.image).abs()[interior].mean()) > 5 * d_mean


@pytest.mark.parametrize("plane", ["lambert", "mirror"])
def test_mesh_tint_gradients_match_fd_over_two_bounces(plane, monkeypatch):
    """Gradients reach the mesh texture's texels and the vertex colours through a second bounce (off a Lambert
    wall) and through a tinted mirror (the plane as a mirror shows the wall). The torch path (the spec) throughout;
    ``tests/trace/test_path_fused.py`` checks the fused kernel's tint gradients against it."""
    import lumigrad.render._path_fused as pf

    monkeypatch.setattr(pf, "fused_path_ok", lambda sc: False)
    mesh0, cam = _tinted_plane(8, smooth_texture(3, 3, 3, seed=4))
    wall_v = torch.tensor([[-1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 1.5, -1.0], [-1.0, 1.5, -1.0]], dtype=DT)
    wall = Mesh(wall_v, torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32))
    w = torch.rand(1, 8, 8, 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    light = [PointLight(_t(0.5, 2.0, 1.0), intensity=6.0)]
    st = TraceSettings(spp=2, max_bounces=2, rr_depth=9, boundary="none", decorrelate=False)

    def loss(tex, vc):
        mesh = Mesh(mesh0.verts, mesh0.faces, uvs=mesh0.uvs, vert_colors=vc, texture=tex)
        mat = LambertMaterial(_t(0.9, 0.8, 0.7)) if plane == "lambert" else MirrorMaterial(_t(0.9, 0.8, 0.7))
        shapes = [Shape(mesh, mat), Shape(wall, LambertMaterial(_t(0.6, 0.7, 0.8)))]
        return (render_trace(shapes, cam, light, st).image * w).sum()

    tex0, vc0 = mesh0.texture, mesh0.vert_colors
    tex, vc = tex0.clone().requires_grad_(True), vc0.clone().requires_grad_(True)
    g_tex, g_vc = torch.autograd.grad(loss(tex, vc), [tex, vc])
    for idx in [(0, 0, 0), (1, 1, 1), (2, 1, 2)]:
        e = torch.zeros_like(tex0)
        e[idx] = 1.0
        fd = _fd(lambda h: loss(tex0 + h * e, vc0), 0.0)
        assert abs(float(fd)) > 1e-4
        torch.testing.assert_close(g_tex[idx], fd, rtol=1e-5, atol=1e-8)
    for idx in [(5, 0), (7, 2)]:
        e = torch.zeros_like(vc0)
        e[idx] = 1.0
        fd = _fd(lambda h: loss(tex0, vc0 + h * e), 0.0)
        assert abs(float(fd)) > 1e-4
        torch.testing.assert_close(g_vc[idx], fd, rtol=1e-5, atol=1e-8)


def test_texture_forward_mode_matches_reverse_mode():
    """Forward-mode AD of a textured render (fused direct path and the GGX general path) equals the vjp."""
    import torch.autograd.forward_ad as fwAD

    mesh, cam = textured_plane_scene(res=8)
    tex = smooth_texture(3, 3, 3)
    dtex = torch.randn(tex.shape, dtype=DT, generator=torch.Generator().manual_seed(2))
    cot = torch.rand(1, 8, 8, 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    st = TraceSettings(spp=2, boundary="none")
    for make in (lambda t: LambertMaterial(TextureParam(t, filter_mode="linear")),
                 lambda t: GGXMaterial(TextureParam(t, filter_mode="linear"), 0.5, 0.1)):
        def render(t):
            return render_trace([Shape(mesh, make(t))], cam, _lights(), st).image

        with torch.no_grad(), fwAD.dual_level():
            jvp = fwAD.unpack_dual(render(fwAD.make_dual(tex, dtex))).tangent
        t = tex.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((render(t) * cot).sum(), [t])
        assert float(jvp.abs().sum()) > 0
        torch.testing.assert_close((jvp * cot).sum(), (g * dtex).sum(), rtol=1e-9, atol=1e-12)
