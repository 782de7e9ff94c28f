"""Rendering pipelines built from the ops, shading and scene layers."""
from lumigrad.render.path import TraceAccel, TraceOutput, TraceSettings, prepare_trace, render_trace
from lumigrad.render.raster import RasterSettings, RenderOutput, render_mesh, render_silhouette
from lumigrad.render.scene import object_ids, render_scene

__all__ = [
    "RasterSettings", "RenderOutput", "render_mesh", "render_silhouette", "render_scene", "object_ids",
    "TraceSettings", "TraceOutput", "TraceAccel", "prepare_trace", "render_trace",
]
