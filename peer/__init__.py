"""Peers trained on our PolyMNIST-style tensors and scored by model.evaluate."""
