"""lumigrad: differentiable rendering for PyTorch."""
__version__ = "0.1.0"
