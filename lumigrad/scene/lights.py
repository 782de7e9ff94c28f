"""Light sources: dataclasses of tensors that shading reads (and optimisation updates).

Radiometric convention (see :mod:`lumigrad.shade`): BRDFs carry their 1/pi, so

* ``DirectionalLight``: ``color * intensity`` is the irradiance on a surface
  facing the light. A white light of intensity ``pi`` shining straight onto a
  Lambertian surface gives outgoing radiance equal to the albedo.
* ``PointLight``: ``color * intensity`` is radiant intensity; irradiance at
  normal incidence is that divided by the falloff (``d**2`` by default).
* ``AmbientLight``: ``color`` is a uniform environment *radiance*; it adds
  ``color * diffuse_albedo`` (the exact response of a Lambertian surface).
* ``SHEnvironmentLight``: environment radiance in a real spherical-harmonics
  basis; shading adds ``diffuse_brdf * irradiance(normal)`` (Ramamoorthi and
  Hanrahan 2001), so a uniform radiance of 1 gives outgoing radiance = albedo.

Set ``requires_grad`` on any tensor field to optimise it. Python floats are
allowed for scalars and take the shading dtype when used.

SH basis: real, orthonormal on the sphere, no Condon-Shortley phase, index
``l * l + l + m`` for ``m = -l..l``, polar axis = world +z. For l <= 2 this is
the basis of Ramamoorthi and Hanrahan (``Y_1,-1 = 0.488603 y``, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from lumigrad._runtime.checks import check_finite, check_float_tensor

__all__ = [
    "AmbientLight",
    "DirectionalLight",
    "PointLight",
    "SHEnvironmentLight",
    "Light",
    "project_sh",
]

_FALLOFFS = ("inverse_square", "none")


def _check_vec3(cls: str, name: str, t) -> Tensor:
    check_float_tensor(cls, name, t, (1,), 3, expected="[3]")
    check_finite(cls, name, t)
    return t


def _check_scalar(cls: str, name: str, v, like: Tensor) -> Tensor | float:
    """A Python float, or a tensor with one element on ``like``'s device and dtype."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not math.isfinite(v):
            raise ValueError(f"{cls}(): {name} must be finite, got {v!r}")
        return float(v)
    if not isinstance(v, Tensor):
        raise TypeError(f"{cls}(): {name} must be a float or a scalar torch.Tensor, got {type(v).__name__}")
    check_float_tensor(cls, name, v, (0, 1), expected="a scalar float tensor ([] or [1])")
    if v.numel() != 1:
        raise ValueError(f"{cls}(): {name} must be a scalar float tensor ([] or [1]), got {list(v.shape)}")
    check_finite(cls, name, v)
    _check_like(cls, name, v, like)
    return v


def _check_like(cls: str, name: str, t: Tensor, like: Tensor) -> None:
    if t.dtype != like.dtype or t.device != like.device:
        raise ValueError(
            f"{cls}(): {name} must share dtype and device with the other fields "
            f"({like.dtype}, {like.device}), got {t.dtype} on {t.device}"
        )


@dataclass
class AmbientLight:
    """Uniform environment radiance.

    Args:
        color: ``[3]`` radiance per channel; adds ``color * diffuse_albedo``.
    """

    color: Tensor  # [3]

    def __post_init__(self):
        _check_vec3("AmbientLight", "color", self.color)


@dataclass
class DirectionalLight:
    """Light from infinitely far away.

    Args:
        to_light: ``[3]`` world direction from the surface towards the light;
            normalised when used (need not be unit).
        color: ``[3]`` per-channel tint; defaults to ones.
        intensity: scalar irradiance multiplier (float or ``[]``/``[1]`` tensor).
    """

    to_light: Tensor  # [3] world
    color: Tensor | None = None  # [3]
    intensity: Tensor | float = 1.0

    def __post_init__(self):
        _check_vec3("DirectionalLight", "to_light", self.to_light)
        if float(self.to_light.detach().norm()) == 0.0:
            raise ValueError("DirectionalLight(): to_light must be non-zero, got [0, 0, 0]")
        if self.color is None:
            self.color = torch.ones_like(self.to_light.detach())
        _check_vec3("DirectionalLight", "color", self.color)
        _check_like("DirectionalLight", "color", self.color, self.to_light)
        self.intensity = _check_scalar("DirectionalLight", "intensity", self.intensity, self.to_light)


@dataclass
class PointLight:
    """Isotropic point light.

    Args:
        position: ``[3]`` world position.
        color: ``[3]`` per-channel tint; defaults to ones.
        intensity: scalar radiant intensity (float or ``[]``/``[1]`` tensor).
        falloff: ``"inverse_square"`` (physical, ``1 / d**2``), ``"none"``, or
            attenuation coefficients ``(constant, linear, quadratic)`` giving
            ``1 / (c + l * d + q * d**2)``; non-negative, not all zero.
    """

    position: Tensor  # [3] world
    color: Tensor | None = None  # [3]
    intensity: Tensor | float = 1.0
    falloff: str | tuple[float, float, float] = "inverse_square"

    def __post_init__(self):
        _check_vec3("PointLight", "position", self.position)
        if self.color is None:
            self.color = torch.ones_like(self.position.detach())
        _check_vec3("PointLight", "color", self.color)
        _check_like("PointLight", "color", self.color, self.position)
        self.intensity = _check_scalar("PointLight", "intensity", self.intensity, self.position)
        if isinstance(self.falloff, str):
            if self.falloff not in _FALLOFFS:
                raise ValueError(
                    f"PointLight(): falloff must be 'inverse_square', 'none' or (constant, linear, quadratic), "
                    f"got {self.falloff!r}"
                )
        else:
            try:
                coeffs = tuple(float(c) for c in self.falloff)
            except (TypeError, ValueError):
                raise ValueError(
                    f"PointLight(): falloff must be 'inverse_square', 'none' or (constant, linear, quadratic), "
                    f"got {self.falloff!r}"
                ) from None
            if len(coeffs) != 3 or any(not math.isfinite(c) or c < 0 for c in coeffs) or sum(coeffs) == 0:
                raise ValueError(
                    f"PointLight(): falloff coefficients must be 3 finite non-negative floats, not all zero, "
                    f"got {self.falloff!r}"
                )
            self.falloff = coeffs


@dataclass
class SHEnvironmentLight:
    """Distant environment radiance in real spherical harmonics.

    Args:
        coeffs: ``[(order + 1)**2, 3]`` radiance coefficients ``L_lm`` per
            channel (basis in the module docstring), ``order >= 2``. Only
            bands l <= 2 matter much for diffuse shading; higher even bands
            are used with their (small) cosine-lobe weights, odd ones vanish.
        order: optional; if given it must agree with ``coeffs``. After
            construction it holds the highest band ``l``.

    Build one from a function of direction with :meth:`from_function`, or
    from samples with :meth:`from_samples` / :func:`project_sh`.
    """

    coeffs: Tensor  # [(order + 1)**2, 3]
    order: int | None = None

    def __post_init__(self):
        check_float_tensor(
            "SHEnvironmentLight", "coeffs", self.coeffs, (2,), 3, expected="[(order + 1)**2, 3]"
        )
        n = self.coeffs.shape[0]
        order = math.isqrt(n) - 1
        if (order + 1) ** 2 != n or order < 2:
            raise ValueError(
                f"SHEnvironmentLight(): coeffs must be [(order + 1)**2, 3] with order >= 2 (9, 16, 25, ... rows), "
                f"got {list(self.coeffs.shape)}"
            )
        if self.order is not None and self.order != order:
            raise ValueError(
                f"SHEnvironmentLight(): order must match coeffs [(order + 1)**2, 3] = {list(self.coeffs.shape)} "
                f"(order {order}), got {self.order!r}"
            )
        self.order = order
        check_finite("SHEnvironmentLight", "coeffs", self.coeffs)

    @classmethod
    def from_samples(
        cls,
        dirs: Tensor,  # [N, 3] unit
        radiance: Tensor,  # [N, 3]
        order: int = 2,
        weights: Tensor | None = None,  # [N] solid angle
    ) -> "SHEnvironmentLight":
        """Fit coefficients to radiance samples; see :func:`project_sh`."""
        return cls(project_sh(dirs, radiance, order=order, weights=weights))

    @classmethod
    def from_function(
        cls,
        fn: Callable[[Tensor], Tensor],
        order: int = 2,
        *,
        resolution: int = 64,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> "SHEnvironmentLight":
        """Project a radiance function ``fn(dirs [N, 3]) -> [N, 3]`` onto SH.

        Uses a product quadrature (Gauss-Legendre in cos(theta), uniform in
        phi; ``resolution x 2 * resolution`` directions), which is exact for
        band-limited functions up to band ``resolution - 1``.

        Example:
            >>> env = SHEnvironmentLight.from_function(lambda d: torch.ones_like(d), order=2)
            >>> round(float(env.coeffs[0, 0]), 4)  # sqrt(4 pi)
            3.5449
        """
        if int(resolution) < order + 1:
            raise ValueError(f"from_function(): resolution must be >= order + 1 = {order + 1}, got {resolution}")
        # The quadrature sum runs in float64 (float32 sums over ~1e4 nodes lose ~1e-5).
        dirs, w = _sphere_quadrature(int(resolution), torch.float64, device)
        radiance = fn(dirs.to(dtype))
        if not isinstance(radiance, Tensor) or radiance.shape != (dirs.shape[0], 3):
            got = list(radiance.shape) if isinstance(radiance, Tensor) else type(radiance).__name__
            raise ValueError(f"from_function(): fn must map dirs [N, 3] to radiance [N, 3], got {got}")
        return cls(project_sh(dirs, radiance.to(torch.float64), order=order, weights=w).to(dtype))


Light = AmbientLight | DirectionalLight | PointLight | SHEnvironmentLight


def _sphere_quadrature(n: int, dtype, device) -> tuple[Tensor, Tensor]:
    """``n x 2n`` Gauss-Legendre x uniform-phi directions ``[N, 3]`` and solid-angle weights ``[N]``."""
    mu, w_mu = np.polynomial.legendre.leggauss(n)
    phi = (np.arange(2 * n) + 0.5) * (math.pi / n)
    mu_g, phi_g = np.meshgrid(mu, phi, indexing="ij")
    s = np.sqrt(np.clip(1.0 - mu_g**2, 0.0, None))
    dirs = np.stack([s * np.cos(phi_g), s * np.sin(phi_g), mu_g], axis=-1).reshape(-1, 3)
    w = np.repeat(w_mu * (math.pi / n), 2 * n)
    return torch.as_tensor(dirs, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)


def _sh_basis(dirs: Tensor, order: int) -> Tensor:
    """Real SH ``[..., (order + 1)**2]`` at unit ``dirs [..., 3]`` (no checks).

    Uses ``Y_lm = N_lm Q_l^|m|(z) * {Re, Im}((x + i y)^|m|)`` where
    ``Q_l^m = P_l^m / sin(theta)^m`` is a polynomial, so the basis is a
    polynomial in (x, y, z): smooth everywhere, including at the poles.
    """
    x, y, z = dirs.unbind(-1)
    # Re/Im of (x + i y)^m by complex multiplication.
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(order):
        re.append(re[-1] * x - im[-1] * y)
        im.append(re[-2] * y + im[-1] * x)
    # Q[l][m] by the associated-Legendre recurrences, without the (-1)^m phase.
    q: dict[tuple[int, int], Tensor] = {}
    for m in range(order + 1):
        q[m, m] = torch.full_like(z, float(_double_factorial(2 * m - 1)))
        if m + 1 <= order:
            q[m + 1, m] = (2 * m + 1) * z * q[m, m]
        for l in range(m + 2, order + 1):
            q[l, m] = ((2 * l - 1) * z * q[l - 1, m] - (l + m - 1) * q[l - 2, m]) / (l - m)
    out = []
    for l in range(order + 1):
        for m in range(-l, l + 1):
            am = abs(m)
            k = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - am) / math.factorial(l + am))
            if m == 0:
                out.append(k * q[l, 0])
            else:
                out.append(math.sqrt(2.0) * k * q[l, am] * (re[am] if m > 0 else im[am]))
    return torch.stack(out, dim=-1)


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def _cosine_lobe(order: int) -> list[float]:
    """Per-band ``A_l`` so that irradiance ``E_lm = A_l L_lm`` (Ramamoorthi and Hanrahan 2001, eq. 8)."""
    a = []
    for l in range(order + 1):
        if l == 0:
            a.append(math.pi)
        elif l == 1:
            a.append(2.0 * math.pi / 3.0)
        elif l % 2:
            a.append(0.0)
        else:
            h = l // 2
            a.append(
                2.0 * math.pi * (-1) ** (h - 1) / ((l + 2) * (l - 1))
                * math.factorial(l) / (2**l * math.factorial(h) ** 2)
            )
    return a


def project_sh(
    dirs: Tensor,  # [N, 3] unit
    radiance: Tensor,  # [N, C]
    order: int = 2,
    weights: Tensor | None = None,  # [N] solid angle
) -> Tensor:
    """Project sampled radiance onto real SH: ``L_lm = sum_i w_i L(d_i) Y_lm(d_i)``.

    Args:
        dirs: ``[N, 3]`` unit directions (normalised here).
        radiance: ``[N, C]`` radiance at ``dirs``.
        order: highest band, ``>= 2``.
        weights: ``[N]`` solid angle of each sample (sum ``4 pi``); default
            ``4 pi / N`` each, i.e. uniformly distributed samples.

    Returns:
        ``[(order + 1)**2, C]`` coefficients. Differentiable w.r.t. ``radiance``.
    """
    fn = "project_sh"
    check_float_tensor(fn, "dirs", dirs, (2,), 3, expected="[N, 3]")
    check_float_tensor(fn, "radiance", radiance, (2,), expected="[N, C]")
    if radiance.shape[0] != dirs.shape[0]:
        raise ValueError(f"{fn}(): radiance must be [N, C] with N = {dirs.shape[0]} like dirs, got {list(radiance.shape)}")
    if not isinstance(order, int) or order < 2:
        raise ValueError(f"{fn}(): order must be an int >= 2, got {order!r}")
    if weights is None:
        weights = torch.full_like(dirs[:, 0], 4.0 * math.pi / max(dirs.shape[0], 1))
    else:
        check_float_tensor(fn, "weights", weights, (1,), expected="[N]")
        if weights.shape[0] != dirs.shape[0]:
            raise ValueError(f"{fn}(): weights must be [N] with N = {dirs.shape[0]}, got {list(weights.shape)}")
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = _sh_basis(unit, order)  # [N, K]
    return basis.transpose(0, 1) @ (weights[:, None] * radiance)
