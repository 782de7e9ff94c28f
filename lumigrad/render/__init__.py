"""Rendering pipelines built from the ops, shading and scene layers."""
from lumigrad.render.path import TraceAccel, TraceOutput, TraceSettings, prepare_trace, render_trace
from lumigrad.render.raster import RasterSettings, RenderOutput, render_mesh, render_silhouette

__all__ = [
    "RasterSettings", "RenderOutput", "render_mesh", "render_silhouette",
    "TraceSettings", "TraceOutput", "TraceAccel", "prepare_trace", "render_trace",
]
