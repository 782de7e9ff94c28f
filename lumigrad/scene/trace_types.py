"""Scene pieces the ray tracer needs beyond the rasterizer's: shapes with emission, and a mirror.

A :class:`Shape` pairs a :class:`~lumigrad.scene.mesh.Mesh` with a material and
an optional emitted radiance, which makes it an area light (emission leaves
the front side, the side of the right-hand normal ``(v1-v0) x (v2-v0)``, as in
Mitsuba's ``area`` emitter). Point, directional, ambient and SH lights are the
ones of :mod:`lumigrad.scene.lights`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lumigrad._runtime.checks import check_finite, check_float_tensor
from lumigrad.scene.materials import (BlinnPhongMaterial, GGXMaterial, LambertMaterial, MaterialParam, TextureParam,
                                      _check_param)
from lumigrad.scene.mesh import Mesh

__all__ = ["EnvironmentLight", "MirrorMaterial", "Shape", "TraceSettings", "TRACE_MATERIALS", "grad_seed"]


@dataclass
class MirrorMaterial:
    """Perfect specular reflector: ``f = reflectance * delta(wi = reflect(wo))``.

    Args:
        reflectance: 1 or 3 channels in [0, 1] (float or tensor, no texture).
    """

    reflectance: MaterialParam = 1.0

    def __post_init__(self):
        self.reflectance = _check_param("MirrorMaterial", "reflectance", self.reflectance, (1, 3))


@dataclass
class EnvironmentLight:
    """Radiance arriving from infinitely far away, stored as an equirectangular (lat-long) image.

    The mapping is Mitsuba 3's ``envmap``: a world direction ``d`` (pointing
    *towards* the environment) has ``u = atan2(d.x, -d.z) / (2 pi)`` (wrapped to
    [0, 1)) and ``v = acos(d.y) / pi`` (``v = 0`` straight up, +y); the image is
    looked up bilinearly at column ``u * W - 0.5`` (periodic) and row
    ``v * (H - 1)`` (clamped). Row 0 is the top of the image (the +y pole).

    Args:
        texels: ``[H, W, 3]`` linear radiance, float (may require grad: the
            tracer's gradients reach every texel it looks up).
        scale: multiplies the radiance.
        to_world: optional ``[3, 3]`` rotation (or ``[4, 4]`` transform whose
            translation is ignored) from the map's frame to the world, as
            Mitsuba's ``to_world``: the radiance from world direction ``d`` is
            the map's at ``to_world^T d``. Not differentiated.

    The tracer importance samples it by a piecewise-constant luminance
    distribution over the ``H x W`` (u, v) cells (see :mod:`lumigrad.render._envmap`).
    """

    texels: Tensor  # [H, W, 3]
    scale: float = 1.0
    to_world: Tensor | None = None  # [3, 3] rotation, map frame -> world

    def __post_init__(self):
        check_float_tensor("EnvironmentLight", "texels", self.texels, (3,), 3, expected="[H, W, 3]")
        check_finite("EnvironmentLight", "texels", self.texels)
        if self.texels.shape[0] < 2 or self.texels.shape[1] < 2:
            raise ValueError(f"EnvironmentLight(): texels must be at least [2, 2, 3], got {list(self.texels.shape)}")
        if bool((self.texels.detach() < 0).any()):
            raise ValueError("EnvironmentLight(): texels must be >= 0 (radiance)")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale >= 0:
            raise ValueError(f"EnvironmentLight(): scale must be a float >= 0, got {self.scale!r}")
        if self.to_world is not None:
            self.to_world = _rotation("EnvironmentLight", "to_world", self.to_world)


def _rotation(fn: str, name: str, m) -> Tensor:
    """``m`` as a float64 ``[3, 3]`` rotation (the upper-left block of a ``[4, 4]``), or a ValueError."""
    try:
        m = torch.as_tensor(m).detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{fn}(): {name} must be a [3, 3] rotation or [4, 4] transform, got {m!r}") from None
    if m.shape == (4, 4):
        m = m[:3, :3]
    if m.shape != (3, 3) or not bool(torch.isfinite(m).all()):
        raise ValueError(f"{fn}(): {name} must be a finite [3, 3] rotation or [4, 4] transform, got {list(m.shape)}")
    if not torch.allclose(m @ m.T, torch.eye(3, dtype=m.dtype), atol=1e-5) or float(torch.linalg.det(m)) < 0:
        raise ValueError(f"{fn}(): {name} must be a rotation (orthonormal, det +1); scaling or mirroring an "
                         f"environment is not supported")
    return m.contiguous()


TRACE_MATERIALS = (LambertMaterial, BlinnPhongMaterial, GGXMaterial, MirrorMaterial)


@dataclass
class Shape:
    """A mesh, its material, and optionally its emitted radiance (an area light).

    Args:
        mesh: the geometry.
        material: Lambert, Blinn-Phong, GGX or :class:`MirrorMaterial`. Lambert, Blinn-Phong and GGX
            parameters may be :class:`~lumigrad.scene.materials.TextureParam` (the mesh then needs
            ``uvs``; the tracer samples them bilinearly at each hit); a mirror's are constant.
        emission: optional ``[3]`` radiance leaving the front side.
    """

    mesh: Mesh
    material: object = None
    emission: Tensor | None = None  # [3]

    def __post_init__(self):
        if not isinstance(self.mesh, Mesh):
            raise TypeError(f"Shape(): mesh must be a lumigrad Mesh, got {type(self.mesh).__name__}")
        if self.material is None:
            self.material = LambertMaterial()
        if not isinstance(self.material, TRACE_MATERIALS):
            raise TypeError(f"Shape(): material must be one of {[c.__name__ for c in TRACE_MATERIALS]}, "
                            f"got {type(self.material).__name__}")
        for name, v in vars(self.material).items():
            if isinstance(v, TextureParam):
                if isinstance(self.material, MirrorMaterial):
                    raise TypeError(f"Shape(): MirrorMaterial.{name} must be constant (no TextureParam)")
                if self.mesh.uvs is None:
                    raise ValueError(f"Shape(): material.{name} is a TextureParam but the mesh has no uvs")
            elif not isinstance(v, (float, Tensor)):
                raise TypeError(f"Shape(): material parameters must be floats, tensors or TextureParams, got "
                                f"{type(v).__name__}")
        if self.emission is not None:
            check_float_tensor("Shape", "emission", self.emission, (1,), 3, expected="[3]")
            check_finite("Shape", "emission", self.emission)
            if self.emission.dtype != self.mesh.verts.dtype or self.emission.device != self.mesh.verts.device:
                raise ValueError("Shape(): emission must share the mesh's dtype and device")

    @property
    def is_emitter(self) -> bool:
        return self.emission is not None

    def area(self) -> Tensor:
        """Total surface area (differentiable)."""
        v, f = self.mesh.verts, self.mesh.faces.long()
        return 0.5 * torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1).norm(dim=-1).sum()


def grad_seed(seed: int) -> int:
    """The seed of the samples that carry a render's derivatives (``TraceSettings.decorrelate``): another stream
    than ``seed``'s, a fixed function of it."""
    return (int(seed) * 0x9E3779B1 + 0x632BE5AB) % (2**31)


@dataclass(frozen=True)
class TraceSettings:
    """How :func:`render_trace` integrates.

    Attributes:
        spp: samples per pixel (stratified when a perfect square).
        max_bounces: 1 = direct illumination only; ``n`` = paths of up to n
            surface interactions (Mitsuba's ``max_depth = n + 1``).
        shadows: trace shadow rays (False: every light is visible).
        boundary: ``"edge"`` adds edge-sampled visibility gradients for
            primary silhouettes, silhouettes seen in planar mirrors and
            point/directional-light shadow boundaries;
            ``"none"`` gives interior (re-attached) gradients only.
        edge_samples: boundary samples per view and per discontinuity type
            (default ``H * W``); each planar mirror gets this many, times the share of the
            image it covers, for what it shows (silhouettes, and as many again for shadows),
            and so does each ordered pair of planar mirrors seen one in the other (silhouettes
            seen through both; ``max_bounces >= 2``).
        shadow_light_samples: light samples ``K`` per area or environment light for
            the boundary terms of their soft shadows (each sample is treated as a
            point / directional light that gets ``edge_samples / K`` boundary
            samples); 0 leaves penumbrae without visibility gradients.
        indirect_samples: with ``boundary="edge"`` and ``max_bounces >= 2``, boundary
            samples per view and path vertex for visibility changes of the indirect light
            seen from the path's vertices (an occluder moving in front of a lit wall; see
            :mod:`lumigrad.render._trace_edges_indirect`); default ``H * W * spp`` (one per
            camera sample, drawn in rounds of one per pixel), 0 turns the term off. Each
            planar mirror adds as many again for the edges seen in it from the path's
            vertices. (Until session 11 the default was ``H * W``: on the Cornell box with
            a moving sphere at 16 spp, ``H * W * spp`` cut the gradient's relative RMSE from
            1.3 / 3.0 to 0.9 / 0.8 (5k / 82k triangles) for 1.1-1.3x the time,
            ``bench/results_trace11.md``.)
        rr_depth: bounce from which Russian roulette may stop paths.
        background: RGB of camera rays that hit nothing (an
            :class:`EnvironmentLight`, when present, replaces it).
        mis: combine light sampling and BSDF sampling by multiple
            importance sampling (power heuristic) for area and environment
            lights; False: light sampling only (emitters found by BSDF rays
            count only after a mirror bounce). Both converge to the same image.
        replay: path replay for memory. The samples are traced in chunks of
            ``chunk_rays`` rays; with ``replay`` the forward pass keeps no
            autograd graph of a chunk, and the backward pass re-traces each
            chunk (same seeds, same paths) to back-propagate it. Memory is then
            that of one chunk whatever ``spp`` is. The BVH (``accel``) must not
            be refitted between the render and its ``backward()``.
        chunk_rays: camera rays per chunk (each chunk has its own seed, so a
            render depends on ``seed`` and ``chunk_rays``, not on ``replay``).
        seed: random seed (renders are deterministic given the seed).
        decorrelate: when the render is differentiated, its image's value comes
            from ``seed`` and its derivatives from independent samples (those of
            seed :func:`grad_seed` ``(seed)``), as Mitsuba 3's ``seed_grad``. With
            one set of samples the gradient of a nonlinear loss is biased: for
            ``mean((I - T)^2)`` its expectation is ``d (E I - T)^2 + 2 Cov(I, dI)``,
            the noise of the residual and of the derivative correlated. Measured
            on the Cornell box's sphere (4 spp, MSE against a moved target): the
            translation gradient 8-11 standard errors off central differences
            (31 % and 113 % in x and y), and agreeing once decorrelated
            (``bench/attached_variance.py``, ``bench/results_trace14.md``). Costs
            one more forward pass without autograd graph (for the fused
            material-only kernel with ``replay``, nothing: its backward re-traces
            the paths anyway, now from the other seed). False: one set of samples
            (the same expectation for losses linear in the image, e.g. its sum).
        ray_eps: ray offset, relative to the scene's bounding-box diagonal.
        primary: how camera rays find their closest hits. ``"raster"`` (default):
            by rasterizing the scene once per sample index (one sub-pixel offset
            per view and sample index, see :func:`lumigrad.render.render_trace`)
            whenever that is exact (pinhole or orthographic camera with every
            vertex in front of a usable near plane), else by the BVH; ``"bvh"``:
            always by BVH ray queries. Both give the same hits (up to rays that
            graze an edge) for the same sample positions.
        sampler: where the sample positions come from. ``"sobol"`` (default):
            shuffled, Owen-scrambled Sobol points (Burley 2020;
            :mod:`lumigrad.ops._qmc_funcs`); a pixel's samples are a
            ``(0, m, 2)``-net in every dimension pair when ``spp = 2^m``. The
            fused path kernel gives each pixel its own sub-pixel offsets; the
            torch path (geometry gradients) shares one net per view, because it
            may rasterize the camera samples (one position per pass). The pairs
            of a path's first two vertices (light samples, BSDF direction, lobe,
            roulette) are Sobol in both, identically (the same paths up to
            rounding), later vertices independent. ``"independent"``: offsets
            jittered in ``n x n`` strata when ``spp = n^2`` (uniform otherwise),
            shared by a view's pixels, every other number independent (the
            default until session 12). Both are unbiased; Sobol is less noisy:
            Cornell box, 3 bounces, 16 spp, 16 seeds, relative image MSE
            0.00058 against 0.00119 at 128^2 (Mitsuba 3 at the same spp:
            ``independent`` 0.00214, ``multijitter`` 0.00049, ``ldsampler``
            0.00055), floor-albedo gradient variance 0.33x
            (``bench/trace_gi_error.py``, ``bench/results_trace12.md``); the
            path kernel's time 1.15x.
        interior: how a camera ray's hit follows the shapes in the interior
            (non-boundary) derivative. ``"detached"`` (Mitsuba 3's projective
            integrators do the same): the ray stays, its intersection with the
            moved triangle slides along it, which near a smooth mesh's outline
            (faces met at grazing angle) grows as 1 / cos: a heavy-tailed
            estimator. ``"attached"``: the hit is a material point that moves with
            its shape, with the area change of the samples, the flux of the
            moving surfaces through the pixel borders, and the edge terms'
            velocities taken relative to the surfaces on either side
            (:mod:`lumigrad.render._attached`; with ``max_bounces >= 2`` the
            paths' later hits on moving shapes are attached too); needs ``boundary="edge"`` and a
            camera without gradient (ValueError otherwise). ``"auto"``:
            attached where it applies, detached elsewhere. For rigid or
            low-dimensional shape parameters (translation, scale, pose): per
            vertex its gradients are 20-1500x noisier (the area change of a
            velocity field as fine as the mesh; ``bench/results_trace14.md``).
            ``"detached"`` is the default. Same expectation; on the Cornell box's
            sphere under its area light (64^2, 4 spp) the translation gradient's
            relative RMSE is 0.12 / 0.12 attached against 0.33 / 0.21 detached at
            5k / 82k triangles, and where a smooth-shaded mesh shadows itself past
            its terminator (which no sampler finds) the detached gradient is 3-4
            standard errors off and the attached one is not. Its pixel-border
            samples (``spp`` per piece of border) cost up to 1.3x the time, and on
            an environment-lit sphere at 64 spp its per-pixel gradient image is a
            little noisier (cosine to central differences 0.90-0.91 against
            0.95-0.96; block norms within 0.2-1.7 % against 4.4-6 %): not the
            default yet (``bench/results_trace13.md``).
    """

    spp: int = 4
    max_bounces: int = 1
    shadows: bool = True
    boundary: Literal["edge", "none"] = "edge"
    edge_samples: int | None = None
    shadow_light_samples: int = 16
    indirect_samples: int | None = None
    rr_depth: int = 3
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0
    ray_eps: float = 1e-4
    mis: bool = True
    replay: bool = False
    chunk_rays: int = 1 << 16
    primary: Literal["raster", "bvh"] = "raster"
    sampler: Literal["independent", "sobol"] = "sobol"
    interior: Literal["auto", "detached", "attached"] = "detached"
    decorrelate: bool = True

    def __post_init__(self) -> None:
        for name in ("spp", "max_bounces", "rr_depth", "chunk_rays"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TraceSettings(): {name} must be a positive int, got {v!r}")
        if self.interior not in ("auto", "detached", "attached"):
            raise ValueError(f"TraceSettings(): interior must be 'auto', 'detached' or 'attached', got "
                             f"{self.interior!r}")
        if self.boundary not in ("edge", "none"):
            raise ValueError(f"TraceSettings(): boundary must be 'edge' or 'none', got {self.boundary!r}")
        if self.edge_samples is not None and (not isinstance(self.edge_samples, int) or self.edge_samples < 1):
            raise ValueError(f"TraceSettings(): edge_samples must be None or a positive int, got {self.edge_samples!r}")
        v = self.shadow_light_samples
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"TraceSettings(): shadow_light_samples must be an int >= 0, got {v!r}")
        v = self.indirect_samples
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"TraceSettings(): indirect_samples must be None or an int >= 0, got {v!r}")
        if len(self.background) != 3:
            raise ValueError(f"TraceSettings(): background must be 3 floats, got {self.background!r}")
        for name in ("shadows", "mis", "replay", "decorrelate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TraceSettings(): {name} must be a bool, got {getattr(self, name)!r}")
        if self.primary not in ("raster", "bvh"):
            raise ValueError(f"TraceSettings(): primary must be 'raster' or 'bvh', got {self.primary!r}")
        if self.sampler not in ("independent", "sobol"):
            raise ValueError(f"TraceSettings(): sampler must be 'independent' or 'sobol', got {self.sampler!r}")
        if not (0 < self.ray_eps < 0.1):
            raise ValueError(f"TraceSettings(): ray_eps must be in (0, 0.1), got {self.ray_eps!r}")
