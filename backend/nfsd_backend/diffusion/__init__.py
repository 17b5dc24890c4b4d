"""Diffusion models: loading, text embeddings, the `Denoiser` seam, DDIM inversion."""

from .ddim import ddim_timesteps, ddim_walk, guided_eps
from .denoiser import Denoiser, UNetDenoiser, eps_from_v, predict_conditions
from .loading import DiffusionModel, build_tiny_random, load_model

__all__ = ["Denoiser", "DiffusionModel", "UNetDenoiser", "build_tiny_random", "ddim_timesteps", "ddim_walk",
           "eps_from_v", "guided_eps", "load_model", "predict_conditions"]
