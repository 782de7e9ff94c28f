"""Pictures and numbers a person looks at: images, grids, loss curves, turntables, metrics."""
from lumigrad.report.images import image_grid, save_image, save_turntable_gif
from lumigrad.report.metrics import save_metrics
from lumigrad.report.plots import save_loss_curve

__all__ = ["save_image", "image_grid", "save_turntable_gif", "save_loss_curve", "save_metrics"]
