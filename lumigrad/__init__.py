"""lumigrad: differentiable rendering for PyTorch.

The top level re-exports the ops (on raw tensors) and the scene types; pipelines,
losses and fitting live in their subpackages. The names load on first use, so
importing a light submodule (``lumigrad._runtime.checks``, ``lumigrad.scene``'s
IO) does not import Warp.
"""
import importlib
import os
import sys

# OpenMP workers that spin after each torch op take the cores from lumigrad's kernel pool and from
# other processes (the W2 raster step ran 2-3x slower on 2 cores, docs/threads.md). Workers sleep
# instead, unless the user set a policy; OpenMP reads it once, so only before torch is imported.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
elif "OMP_WAIT_POLICY" not in os.environ and sys.modules["torch"].get_num_threads() > 1:
    import warnings

    warnings.warn(
        "lumigrad was imported after torch with OMP_WAIT_POLICY unset: torch's OpenMP workers will spin after "
        "each torch op and slow lumigrad's CPU kernels (a 512^2 raster step took 1.3-1.5x longer). Set "
        "OMP_WAIT_POLICY=PASSIVE in the environment, or import lumigrad before torch; set OMP_WAIT_POLICY to "
        "any value to silence this (docs/threads.md).",
        RuntimeWarning,
        stacklevel=2,
    )

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(
        ["rasterize", "Rasterized", "interpolate", "Interpolated", "texture", "build_mip", "edge_grad", "edge_rim", "EdgeRim",
         "antialias", "AntialiasTopology", "prepare_topology", "soft_rasterize", "SoftRasterized"],
        "lumigrad.ops",
    ),
    **dict.fromkeys(
        ["AmbientLight", "BlinnPhongMaterial", "Camera", "DirectionalLight", "GGXMaterial", "LambertMaterial", "Mesh",
         "PointLight", "SHEnvironmentLight", "TextureParam", "read_image", "read_mesh", "read_transforms_json",
         "write_image", "write_mesh"],
        "lumigrad.scene",
    ),
}
_SUBPACKAGES = ("geometry", "ops", "scene", "shade", "render", "losses", "optim", "testing", "report", "tasks", "cli")

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lumigrad.{name}")
    raise AttributeError(f"module 'lumigrad' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))
