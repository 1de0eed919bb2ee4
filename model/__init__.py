"""Multimodal EBM + multimodal VAE learned by MCMC revision (arXiv 2605.00644), on PolyMNIST-style data."""
from .config import Chain, Chains, ModelConfig, TrainConfig, temperature
from .networks import EnergyModel, Generator, Inference, MultimodalEBMVAE, observed_mask
from .sampler import Sampler

__all__ = ["Chain", "Chains", "ModelConfig", "TrainConfig", "temperature", "EnergyModel", "Generator", "Inference",
           "MultimodalEBMVAE", "observed_mask", "Sampler"]
