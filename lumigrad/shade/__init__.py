"""Deferred shading of interpolated G-buffers with the scene's lights and materials."""
from lumigrad.shade.brdf import blinn_phong_brdf, ggx_brdf, ggx_ndf, lambert_brdf
from lumigrad.shade.deferred import sample_param, shade
from lumigrad.shade.lighting import eval_light, sh_basis, sh_irradiance
from lumigrad.shade.phong import PhongMaterial, phong_specular

__all__ = ["shade", "sample_param", "lambert_brdf", "blinn_phong_brdf", "ggx_brdf", "ggx_ndf", "eval_light", "sh_basis", "sh_irradiance", "PhongMaterial", "phong_specular"]
