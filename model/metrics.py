"""The field's metrics: coherence judged by per-modality classifiers, and a Fréchet distance in a
feature space (here the classifiers' hidden layer; Inception weights cannot be downloaded offline)."""
from __future__ import annotations

import numpy as np
import torch


def coherence(clf, x: torch.Tensor, labels: torch.Tensor, modalities=None) -> float:
    """Fraction of (sample, modality) images in ``modalities`` that the classifiers read as ``labels``."""
    digit, _ = clf.predict(x)
    mods = list(range(x.shape[1])) if modalities is None else list(modalities)
    return (digit[:, mods] == labels[:, None]).float().mean().item()


def joint_coherence(clf, x: torch.Tensor) -> float:
    """Fraction of joint samples whose M predicted digits all agree."""
    digit, _ = clf.predict(x)
    return (digit == digit[:, :1]).all(1).float().mean().item()


@torch.no_grad()
def classifier_features(clf, x: torch.Tensor, m: int, batch: int = 1000) -> np.ndarray:
    clf.eval()
    return torch.cat([clf.features(x[i:i + batch, m], m) for i in range(0, len(x), batch)]).double().numpy()


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2}) between Gaussian fits of two feature sets."""
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    ca, cb = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    # Tr (C_a C_b)^{1/2} = sum of sqrt of eigenvalues of sqrt(C_a) C_b sqrt(C_a) (symmetric PSD)
    wa, va = np.linalg.eigh(ca)
    sqrt_a = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    eig = np.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt)
