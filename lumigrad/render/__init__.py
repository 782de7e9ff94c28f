"""Rendering pipelines built from the ops, shading and scene layers."""
from lumigrad.render.raster import RasterSettings, RenderOutput, render_mesh, render_silhouette

__all__ = ["RasterSettings", "RenderOutput", "render_mesh", "render_silhouette"]
