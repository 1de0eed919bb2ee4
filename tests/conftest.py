"""Shared fixtures: a tiny synthetic MNIST file and tiny model configs, so every test is fast."""
import numpy as np
import pytest
import torch

from model.config import ModelConfig


def fake_mnist(n_train=120, n_test=40, seed=0):
    """Random blob 'digits' (uint8 28x28) with balanced labels, in the Keras .npz layout."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n) % 10
        x = np.zeros((n, 28, 28), np.uint8)
        for i in range(n):
            r, c = rng.integers(6, 22, 2)
            x[i, r - 4:r + 4, c - 2:c + 2] = 255  # a bar: enough ink to survive binarisation
            x[i, 4 + y[i], 4:24] = 200            # a label-dependent stroke
        return x, y.astype(np.uint8)

    x_tr, y_tr = split(n_train)
    x_te, y_te = split(n_test)
    return x_tr, y_tr, x_te, y_te


@pytest.fixture(scope="session")
def mnist_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    x_tr, y_tr, x_te, y_te = fake_mnist()
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return path


@pytest.fixture
def tiny_config():
    return ModelConfig.from_dict(dict(n_modalities=3, latent_dim=4, width=8, ebm_width=8, ebm_features=16,
                                      latent_steps=3, data_steps=3))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
