"""Multimodal EBM + multimodal VAE learned by MCMC revision (arXiv 2605.00644), on PolyMNIST-style data."""
from .config import ModelConfig, TrainConfig, temperature
from .networks import EnergyModel, Generator, Inference, MultimodalEBMVAE, observed_mask

__all__ = ["ModelConfig", "TrainConfig", "temperature", "EnergyModel", "Generator", "Inference",
           "MultimodalEBMVAE", "observed_mask"]
