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


def hits(digit: torch.Tensor, labels: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Conditional generation: 1.0 where a generated (not observed) modality reads as its tuple's digit,
    float [B, M - |S|], from the predicted digits [B, M], the labels [B] and the observed mask [M]."""
    return (digit[:, ~observed] == labels[:, None]).float()


def one_digit(digit: torch.Tensor) -> torch.Tensor:
    """Joint samples: True where all M predicted digits [B, M] agree, bool [B]."""
    return (digit == digit[:, :1]).all(1)


def joint_coherence(clf, x: torch.Tensor) -> float:
    """Fraction of joint samples whose M predicted digits all agree."""
    digit, _ = clf.predict(x)
    return one_digit(digit).float().mean().item()


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a share k / n (95 % for z = 1.96): (low, high) within [0, 1]; (0, 1) for n = 0.
    It assumes the n trials independent."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_interval(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of ``values`` [N], one per resampled unit (e.g. a test tuple's
    paired change between two stages: all of a tuple's generations move together)."""
    values = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.array([values[rng.integers(0, n, n)].mean() for _ in range(n_boot)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def digit_entropy(counts: torch.Tensor) -> float:
    """The entropy of a histogram of the 10 digits, divided by log 10: 1 = every digit equally often, 0 = one digit
    (or none at all)."""
    q = counts.float() / counts.sum().clamp_min(1)
    q = q[q > 0]
    return float(-(q * q.log()).sum() / np.log(10))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2}) between Gaussian fits of two feature sets."""
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    ca, cb = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    # Tr (C_a C_b)^{1/2} = sum of sqrt of eigenvalues of sqrt(C_a) C_b sqrt(C_a) (symmetric PSD)
    wa, va = np.linalg.eigh(ca)
    sqrt_a = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    eig = np.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt)


# ---------------------------------------------------------------- Inception features (optional)

class InceptionFeatures:
    """The 2048-d pool features of a torchvision ``inception_v3``, loaded from a local state_dict file
    (the ImageNet weights, ``inception_v3_google-0cc3c7bd.pth``, cannot be downloaded here).
    Images [B, 3, 28, 28] in [0, 1] are resized to 299x299 (bilinear) and ImageNet-normalised."""

    name = "inception_v3 pool (2048-d)"

    def __init__(self, path, batch: int = 100):
        from pathlib import Path

        try:
            from torchvision.models import inception_v3
        except ImportError as e:
            raise RuntimeError("--inception needs torchvision (pip install torchvision)") from e
        if not Path(path).is_file():
            raise FileNotFoundError(f"Inception weights file not found: {str(path)!r} "
                                    f"(a torchvision inception_v3 state_dict)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise RuntimeError(f"could not read Inception weights from {str(path)!r} ({type(e).__name__}: {e})") from e
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("AuxLogits")] or unexpected:
            raise RuntimeError(f"{str(path)!r} is not a torchvision inception_v3 state_dict "
                               f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)")
        net.fc = torch.nn.Identity()
        self.net, self.batch = net.eval(), batch
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, m: int) -> np.ndarray:
        out = []
        for i in range(0, len(x), self.batch):
            xb = torch.nn.functional.interpolate(x[i:i + self.batch], size=(299, 299), mode="bilinear",
                                                 align_corners=False)
            out.append(self.net((xb - self.mean) / self.std))
        return torch.cat(out).double().numpy()


class ClassifierFeatures:
    """The default feature space: the 128-d hidden layer of modality m's digit classifier."""

    name = "digit-classifier hidden layer (128-d), not Inception"

    def __init__(self, clf, batch: int = 1000):
        self.clf, self.batch = clf, batch

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, m: int) -> np.ndarray:
        """x: images of modality m [B, 3, 28, 28] -> features [B, 128] (float64)."""
        self.clf.eval()
        return torch.cat([self.clf.features(x[i:i + self.batch], m)
                          for i in range(0, len(x), self.batch)]).double().numpy()
