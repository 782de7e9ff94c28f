"""Image losses and mesh regularizers."""
from lumigrad.losses.image import l1, mask_iou_loss, mask_loss, mse, psnr, ssim, ssim_loss
from lumigrad.losses.mesh import MeshTopology, edge_length_loss, laplacian_smoothing, mesh_laplacian, mesh_topology, normal_consistency
from lumigrad.losses.perceptual import PerceptualLoss

__all__ = [
    "mse", "l1", "psnr", "ssim", "ssim_loss", "mask_iou_loss", "mask_loss", "PerceptualLoss",
    "MeshTopology", "mesh_topology", "mesh_laplacian", "laplacian_smoothing", "edge_length_loss", "normal_consistency",
]
