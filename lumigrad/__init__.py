"""lumigrad: differentiable rendering for PyTorch.

The top level re-exports the ops (on raw tensors) and the scene types; pipelines,
losses and fitting live in their subpackages.
"""
from lumigrad.ops import (
    AntialiasTopology,
    Interpolated,
    Rasterized,
    antialias,
    build_mip,
    interpolate,
    prepare_topology,
    rasterize,
    soft_rasterize,
    texture,
)
from lumigrad.scene import (
    AmbientLight,
    BlinnPhongMaterial,
    Camera,
    DirectionalLight,
    GGXMaterial,
    LambertMaterial,
    Mesh,
    PointLight,
    SHEnvironmentLight,
    TextureParam,
    read_image,
    read_mesh,
    read_transforms_json,
    write_image,
    write_mesh,
)

__version__ = "0.1.0"

__all__ = [
    "rasterize", "Rasterized", "interpolate", "Interpolated", "texture", "build_mip",
    "antialias", "AntialiasTopology", "prepare_topology", "soft_rasterize",
    "Mesh", "Camera", "AmbientLight", "DirectionalLight", "PointLight", "SHEnvironmentLight",
    "LambertMaterial", "BlinnPhongMaterial", "GGXMaterial", "TextureParam",
    "read_mesh", "write_mesh", "read_image", "write_image", "read_transforms_json",
]
