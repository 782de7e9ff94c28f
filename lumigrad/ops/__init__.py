"""Differentiable rendering ops on raw tensors (clip-space positions in, images out)."""
from lumigrad.ops.antialias import AntialiasTopology, antialias, prepare_topology
from lumigrad.ops.deferred_shade import deferred_shade
from lumigrad.ops.edge_grad import EdgeRim, edge_grad, edge_rim
from lumigrad.ops.interpolate import Interpolated, interpolate
from lumigrad.ops.normals import vertex_normal_sums
from lumigrad.ops.rasterize import Rasterized, rasterize
from lumigrad.ops.soft_rasterize import SoftRasterized, soft_rasterize
from lumigrad.ops.texture import build_mip, texture
from lumigrad.ops.trace import RayHits, Reattached, TraceBVH, intersect, occluded, reattach

__all__ = [
    "rasterize", "Rasterized", "interpolate", "Interpolated", "texture", "build_mip",
    "antialias", "AntialiasTopology", "prepare_topology", "soft_rasterize", "SoftRasterized", "edge_grad", "edge_rim", "EdgeRim",
    "TraceBVH", "RayHits", "Reattached", "intersect", "occluded", "reattach", "vertex_normal_sums", "deferred_shade",
]
