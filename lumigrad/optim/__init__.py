"""Fitting: the optimisation loop, convergence tests, checkpoints, large-steps and remeshing."""
from lumigrad.optim.checkpoint import CheckpointConfig
from lumigrad.optim.convergence import Convergence
from lumigrad.optim.fit import FitHistory, FitResult, FitState, LossTerms, fit
from lumigrad.optim.large_steps import AdamUniform, CholeskySolver, compute_matrix, from_differential, laplacian_matrix, to_differential
from lumigrad.optim.remesh import remesh

__all__ = [
    "fit", "LossTerms", "FitHistory", "FitState", "FitResult", "Convergence", "CheckpointConfig",
    "laplacian_matrix", "compute_matrix", "to_differential", "from_differential", "CholeskySolver", "AdamUniform", "remesh",
]
