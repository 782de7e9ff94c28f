"""BSDF importance sampling for :func:`lumigrad.render.path.render_trace`.

* Lambert and Blinn-Phong: cosine-weighted hemisphere, ``pdf = cos / pi``.
* GGX (:func:`lumigrad.shade.brdf.ggx_brdf`, ``alpha = roughness^2``): a
  mixture of the specular lobe, sampled by the classic ``D(h) cos(theta_h)``
  half-vector density (Walter et al. 2007; ``pdf(wi) = D(h) (n.h) / (4 |wo.h|)``),
  and the cosine density for the diffuse lobe. The specular lobe is picked with
  probability ``s / (s + d)``, ``s`` the mean normal-incidence Fresnel
  reflectance ``F0``, ``d`` the mean diffuse albedo ``(1 - metallic) base``,
  clamped to [0.1, 1] so a mostly diffuse material still samples its highlight;
  it is 1 for a pure metal.

Sampled directions and densities carry no gradient (detached sampling, as in
Mitsuba 3's PRB): the path weight ``f(wo, wi) cos / pdf`` is differentiated at
fixed directions, which is unbiased for the interior (continuous) part.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot
from lumigrad.scene.materials import GGXMaterial, TextureParam
from lumigrad.shade.brdf import _MIN_ROUGHNESS, _ggx_d

__all__ = ["frame", "sample_cosine", "spec_prob", "bsdf_pdf", "bsdf_sample", "MaterialTable"]


def frame(n: Tensor) -> tuple[Tensor, Tensor]:
    """Tangent and bitangent ``[R, 3]`` completing unit normals ``n [R, 3]`` to an orthonormal frame."""
    a = torch.where(n[:, :1].abs() > 0.9, torch.tensor([0.0, 1.0, 0.0], dtype=n.dtype, device=n.device),
                    torch.tensor([1.0, 0.0, 0.0], dtype=n.dtype, device=n.device))
    t = torch.linalg.cross(a, n, dim=-1)
    t = t / t.norm(dim=-1, keepdim=True)
    return t, torch.linalg.cross(n, t, dim=-1)


def sample_cosine(n: Tensor, u1: Tensor, u2: Tensor) -> Tensor:
    """Cosine-weighted directions about unit normals ``n [R, 3]`` from uniforms ``u1, u2 [R]``."""
    r, phi = u1.sqrt(), 2 * math.pi * u2
    t, b = frame(n)
    z = (1 - u1).clamp_min(0).sqrt()
    return (r * torch.cos(phi))[:, None] * t + (r * torch.sin(phi))[:, None] * b + z[:, None] * n


def _mat_param(v, like: Tensor) -> Tensor:
    """A parameter's constant value (no gradient); a :class:`TextureParam` gives its mean texel (used where a
    per-shape constant is needed: the sampling densities, and the placeholder rows of :class:`MaterialTable`)."""
    if isinstance(v, TextureParam):
        t = v.texture.detach()
        return t.reshape(-1, t.shape[-1]).mean(0).to(like.dtype)
    if isinstance(v, Tensor):
        return v.detach().reshape(-1).to(like.dtype)
    return torch.tensor([float(v)], dtype=like.dtype, device=like.device)


def _alpha(material: GGXMaterial, like: Tensor) -> Tensor:
    r = _mat_param(material.roughness, like).clamp(_MIN_ROUGHNESS, 1.0)
    return r * r


def spec_prob(material, like: Tensor) -> float:
    """Probability of sampling the specular lobe (0 for materials sampled by cosine only)."""
    if not isinstance(material, GGXMaterial):
        return 0.0
    m = float(_mat_param(material.metallic, like).clamp(0, 1).mean())
    base = _mat_param(material.base_color, like).clamp(0, 1)
    s = float((0.04 * (1 - m) + base * m).mean())
    d = float(((1 - m) * base).mean())
    if d <= 0:
        return 1.0
    return min(1.0, max(0.1, s / (s + d)))


def _ggx_pdf(n: Tensor, wo: Tensor, wi: Tensor, alpha: Tensor) -> Tensor:
    h = wo + wi
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    nh = dot(n, h).clamp(0.0, 1.0)
    oh = dot(wo, h).abs().clamp_min(1e-8)
    return _ggx_d(nh[:, None], alpha)[:, 0] * nh / (4 * oh)


def bsdf_pdf(material, n: Tensor, wo: Tensor, wi: Tensor) -> Tensor:
    """``[R]`` solid-angle density of :func:`bsdf_sample` for unit ``n, wo, wi [R, 3]`` (no gradient)."""
    with torch.no_grad():
        cos = dot(n, wi).clamp_min(0.0) / math.pi
        ps = spec_prob(material, n)
        if ps == 0.0:
            return cos
        return ps * _ggx_pdf(n, wo, wi, _alpha(material, n)) * (dot(n, wi) > 0) + (1 - ps) * cos


def bsdf_sample(material, n: Tensor, wo: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(wi [R, 3], pdf [R])``: directions drawn for unit normals and view directions ``n, wo [R, 3]``."""
    with torch.no_grad():
        R = n.shape[0]
        u = torch.rand(R, 3, generator=gen, dtype=n.dtype, device=n.device)
        wi = sample_cosine(n, u[:, 0], u[:, 1])
        ps = spec_prob(material, n)
        if ps > 0.0:
            a2 = _alpha(material, n) ** 2
            # D(h) cos(theta_h) sampling: tan^2(theta_h) = a^2 u / (1 - u).
            uu = u[:, 0]
            cos2 = (1 - uu) / (1 + (a2 - 1) * uu)
            ct = cos2.clamp(0, 1).sqrt()
            st = (1 - cos2).clamp(0, 1).sqrt()
            phi = 2 * math.pi * u[:, 1]
            t, b = frame(n)
            h = (st * torch.cos(phi))[:, None] * t + (st * torch.sin(phi))[:, None] * b + ct[:, None] * n
            spec = 2 * dot(wo, h, keepdim=True) * h - wo
            pick = (u[:, 2] < ps)[:, None]
            wi = torch.where(pick, spec, wi)
        return wi, bsdf_pdf(material, n, wo, wi)


# --- all shapes' materials at once -----------------------------------------------------------------

_LAMBERT, _PHONG, _GGX, _MIRROR = 0, 1, 2, 3


class MaterialTable:
    """The materials of all shapes as per-shape parameter rows, so one call shades hits on every shape.

    ``shape_id [R]`` (the shape each hit lies on) gathers the rows; each material
    kind present (Lambert, Blinn-Phong, GGX, mirror) is evaluated once over its hits
    instead of once per shape. Colour parameters are ``[S, 3]`` (1 channel expanded),
    scalar ones ``[S, 1]``. Rows are gathered from the materials' tensors, so
    gradients reach them. A :class:`TextureParam` has a placeholder row (its mean texel, no gradient):
    the renderer passes the per-hit texture samples as ``at`` (:func:`lumigrad.render.path._material_at`),
    which replace the gathered rows of those parameters; the sampling constants (``spec_prob``, ``alpha``)
    use the mean texel. Values equal the per-material functions above and
    :func:`lumigrad.shade.brdf._lambert` / ``_blinn_phong`` / ``_ggx``.
    """

    def __init__(self, materials: list, dtype: torch.dtype, device: torch.device) -> None:
        from lumigrad.scene.materials import BlinnPhongMaterial, LambertMaterial
        from lumigrad.scene.trace_types import MirrorMaterial

        kinds = {LambertMaterial: _LAMBERT, BlinnPhongMaterial: _PHONG, GGXMaterial: _GGX, MirrorMaterial: _MIRROR}
        self.kinds = [kinds[type(m)] for m in materials]
        self.present = sorted(set(self.kinds))
        self.kind = torch.tensor(self.kinds, dtype=torch.long, device=device)  # [S]
        self.dtype, self.device = dtype, device
        S = len(materials)

        def rows(cls, attr, width):
            out = []
            for m in materials:
                if isinstance(m, cls):
                    v = getattr(m, attr)
                    if isinstance(v, TextureParam):
                        v = _mat_param(v, torch.zeros(0, dtype=dtype, device=device))
                    elif isinstance(v, Tensor):
                        v = v.reshape(-1).to(dtype)
                    else:
                        v = torch.tensor([float(v)], dtype=dtype, device=device)
                    out.append(v.expand(width) if v.numel() == 1 else v)
                else:
                    out.append(torch.zeros(width, dtype=dtype, device=device))
            return torch.stack(out, 0)

        self.p = {}
        if _LAMBERT in self.present:
            self.p["albedo"] = rows(LambertMaterial, "albedo", 3)
        if _PHONG in self.present:
            self.p["diffuse"] = rows(BlinnPhongMaterial, "diffuse", 3)
            self.p["specular"] = rows(BlinnPhongMaterial, "specular", 3)
            self.p["shininess"] = rows(BlinnPhongMaterial, "shininess", 1)
        if _GGX in self.present:
            self.p["base_color"] = rows(GGXMaterial, "base_color", 3)
            self.p["roughness"] = rows(GGXMaterial, "roughness", 1)
            self.p["metallic"] = rows(GGXMaterial, "metallic", 1)
        if _MIRROR in self.present:
            self.p["reflectance"] = rows(MirrorMaterial, "reflectance", 3)
        like = torch.zeros(1, dtype=dtype, device=device)
        # Sampling constants (no gradient): specular-lobe probability and GGX alpha per shape.
        self.has_spec = _GGX in self.present
        self.spec_prob = torch.tensor([spec_prob(m, like) for m in materials], dtype=dtype, device=device)
        self.alpha = torch.stack([_alpha(m, like)[:1] if isinstance(m, GGXMaterial) else like.new_ones(1)
                                  for m in materials], 0)[:, 0] if S else like
        self.mirror = self.kind == _MIRROR  # [S] bool

    def _by_kind(self, sid: Tensor, fn, width: int = 3) -> Tensor:
        """``fn(kind, rows)`` evaluated per kind present, rows = indices of ``sid`` with that kind."""
        if len(self.present) == 1:
            return fn(self.present[0], None)
        kind = self.kind[sid]
        out = None
        for k in self.present:
            sel = torch.nonzero(kind == k).squeeze(1)
            if sel.numel() == 0:
                continue
            v = fn(k, sel)
            if out is None:
                out = torch.zeros(sid.shape[0], width, dtype=v.dtype, device=v.device)
            out = out.index_put((sel,), v)
        return out if out is not None else torch.zeros(sid.shape[0], width, dtype=self.dtype, device=self.device)

    def brdf(self, sid: Tensor, n: Tensor, l: Tensor, v: Tensor, at: dict | None = None) -> Tensor:
        """``[R, 3]`` BRDF value (no cosine) at hits on shapes ``sid [R]``; 0 for mirrors (delta lobe).

        ``at``: optional per-hit rows ``name -> [R, width]`` (textured parameters) used instead of the
        per-shape rows of those names."""
        from lumigrad.shade.brdf import _blinn_phong, _ggx, _lambert

        p = self.p

        def fn(k, sel):
            s, nn, ll, vv = (sid, n, l, v) if sel is None else (x.index_select(0, sel) for x in (sid, n, l, v))

            def g(name):  # index_select: its backward is an index_add, cheaper than indexing's index_put
                if at and name in at:
                    return at[name] if sel is None else at[name].index_select(0, sel)
                return p[name].index_select(0, s)

            if k == _LAMBERT:
                return _lambert(nn, g("albedo")).expand(nn.shape[0], 3)
            if k == _PHONG:
                return _blinn_phong(nn, ll, vv, g("diffuse"), g("specular"), g("shininess")).expand(nn.shape[0], 3)
            if k == _GGX:
                return _ggx(nn, ll, vv, g("base_color"), g("roughness"), g("metallic")).expand(nn.shape[0], 3)
            return torch.zeros_like(nn)

        return self._tinted(self._by_kind(sid, fn), at)

    @staticmethod
    def _tinted(v: Tensor, at: dict | None) -> Tensor:
        """``v`` times the per-hit ``at["tint"]`` (a mesh's own texture / vertex colours), when there is one."""
        return v * at["tint"] if at and "tint" in at else v

    def kd(self, sid: Tensor, at: dict | None = None) -> Tensor:
        """``[R, 3]`` diffuse albedo (for analytic ambient / SH light), ((1 - metallic) base colour for GGX);
        ``at`` as in :meth:`brdf`."""
        p = self.p

        def fn(k, sel):
            s = sid if sel is None else sid.index_select(0, sel)

            def g(name):
                if at and name in at:
                    return at[name] if sel is None else at[name].index_select(0, sel)
                return p[name].index_select(0, s)

            if k == _LAMBERT:
                return g("albedo")
            if k == _PHONG:
                return g("diffuse")
            if k == _GGX:
                return (1.0 - g("metallic").clamp(0.0, 1.0)) * g("base_color")
            return torch.zeros(s.shape[0], 3, dtype=self.dtype, device=self.device)

        return self._tinted(self._by_kind(sid, fn), at)

    def reflectance(self, sid: Tensor) -> Tensor:
        """``[R, 3]`` mirror reflectance rows (only meaningful where ``self.mirror[sid]``)."""
        return self.p["reflectance"].index_select(0, sid)

    def pdf(self, sid: Tensor, n: Tensor, wo: Tensor, wi: Tensor) -> Tensor:
        """``[R]`` density of :meth:`sample`, as :func:`bsdf_pdf` per shape (no gradient)."""
        with torch.no_grad():
            cos = dot(n, wi).clamp_min(0.0) / math.pi
            if not self.has_spec:
                return cos
            ps, alpha = self.spec_prob[sid], self.alpha[sid]
            spec = _ggx_d_pdf(n, wo, wi, alpha) * (dot(n, wi) > 0)
            return torch.where(ps > 0, ps * spec + (1 - ps) * cos, cos)

    def sample(self, sid: Tensor, n: Tensor, wo: Tensor, gen) -> tuple[Tensor, Tensor]:
        """``(wi [R, 3], pdf [R])`` as :func:`bsdf_sample` per shape (cosine, or the GGX mixture). ``gen``: a
        ``torch.Generator``, or the Sobol sampler's draws of the ``R`` paths (:mod:`lumigrad.render._sampler`)."""
        with torch.no_grad():
            R = n.shape[0]
            u = gen.bsdf() if hasattr(gen, "bsdf") else torch.rand(R, 3, generator=gen, dtype=n.dtype, device=n.device)
            t, b = frame(n)
            r, phi = u[:, 0].sqrt(), 2 * math.pi * u[:, 1]
            z = (1 - u[:, 0]).clamp_min(0).sqrt()
            cphi, sphi = torch.cos(phi), torch.sin(phi)
            wi = (r * cphi)[:, None] * t + (r * sphi)[:, None] * b + z[:, None] * n
            if self.has_spec:
                ps, a2 = self.spec_prob[sid], self.alpha[sid] ** 2
                uu = u[:, 0]
                cos2 = (1 - uu) / (1 + (a2 - 1) * uu)
                ct = cos2.clamp(0, 1).sqrt()
                st = (1 - cos2).clamp(0, 1).sqrt()
                h = (st * cphi)[:, None] * t + (st * sphi)[:, None] * b + ct[:, None] * n
                spec = 2 * dot(wo, h, keepdim=True) * h - wo
                wi = torch.where((u[:, 2] < ps)[:, None], spec, wi)
            return wi, self.pdf(sid, n, wo, wi)


def _ggx_d_pdf(n: Tensor, wo: Tensor, wi: Tensor, alpha: Tensor) -> Tensor:
    """:func:`_ggx_pdf` with a per-row ``alpha [R]``."""
    h = wo + wi
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    nh = dot(n, h).clamp(0.0, 1.0)
    oh = dot(wo, h).abs().clamp_min(1e-8)
    return _ggx_d(nh, alpha) * nh / (4 * oh)
