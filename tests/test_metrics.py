"""The metrics on cases with known answers."""
import numpy as np
import pytest
import torch

from model.evaluate import conditional_coherence, subsets
from model.data import PolyMNIST
from model.metrics import coherence, frechet_distance, joint_coherence, wilson_interval

M = 5


class IntensityClassifier:
    """A stand-in judge: reads digit d from an image whose mean intensity is (d + 0.5) / 10."""

    def predict(self, x):
        digit = (x.mean((2, 3, 4)) * 10).floor().clamp(0, 9).long()
        return digit, torch.ones_like(digit, dtype=torch.float)


def images_of(digits):
    """[B, M] digits -> [B, M, 3, 28, 28] images the IntensityClassifier reads back."""
    return ((digits.float() + 0.5) / 10)[..., None, None, None].expand(*digits.shape, 3, 28, 28).clone()


labels = torch.arange(100) % 10   # balanced: every digit 10 times
clf = IntensityClassifier()


def test_perfect_generator_is_fully_coherent():
    x = images_of(labels[:, None].expand(-1, M))
    assert coherence(clf, x, labels) == 1.0
    assert coherence(clf, x, labels, modalities=[1, 3]) == 1.0
    assert joint_coherence(clf, x) == 1.0


def test_constant_generator_is_at_chance():
    x = images_of(torch.full((100, M), 3))
    assert coherence(clf, x, labels) == pytest.approx(0.1)
    assert joint_coherence(clf, x) == 1.0          # all agree, yet incoherent with the labels


def test_independent_modalities_are_jointly_incoherent():
    g = torch.Generator().manual_seed(0)
    digits = torch.randint(10, (5000, M), generator=g)
    assert coherence(clf, images_of(digits), torch.randint(10, (5000,), generator=g)) == pytest.approx(0.1, abs=0.02)
    assert joint_coherence(clf, images_of(digits)) < 0.003   # chance: 10^-(M-1) = 1e-4


class CopySampler:
    """Fills every missing modality with the first observed modality's digit (perfect), or a constant."""
    cond_stages = ("proposal",)

    def __init__(self, constant=None):
        self.constant = constant

    def conditional(self, idx, x, observed, g):
        src = x[:, observed.nonzero()[0, 0]]
        fill = src if self.constant is None else images_of(torch.full((len(x), 1), self.constant))[:, 0]
        out = x.clone()
        out[:, ~observed] = fill[:, None]
        return {"proposal": out}


def _test_set():
    x = (images_of(labels[:, None].expand(-1, M)) * 255).round().to(torch.uint8)
    return PolyMNIST(x, labels)


def test_conditional_coherence_over_all_subsets():
    test = _test_set()
    idx = np.arange(100)
    perfect = conditional_coherence(CopySampler(), clf, test, idx, batch=30, progress=False)["proposal"]
    assert len(perfect["by_subset"]) == len(subsets(M)) == 2 ** M - 2
    assert perfect["mean"] == 1.0 and set(perfect["by_size"]) == {"1", "2", "3", "4"}
    const = conditional_coherence(CopySampler(constant=7), clf, test, idx, batch=30, progress=False)["proposal"]
    assert all(v == pytest.approx(0.1) for v in const["by_size"].values())


def test_frechet_distance_of_a_set_to_itself_is_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 16)) @ rng.standard_normal((16, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2000, 8))
    d = [frechet_distance(a, a + s) for s in (0.0, 0.5, 1.0, 2.0)]
    # same covariance: the distance is exactly ||shift||^2 = 8 s^2
    assert d == pytest.approx([0.0, 8 * 0.25, 8.0, 32.0], abs=1e-6)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((200000, 3)) * [1.0, 2.0, 0.5]
    b = rng.standard_normal((200000, 3)) * [2.0, 2.0, 1.0] + [1.0, 0.0, 0.0]
    # (mu_a - mu_b)^2 + sum (s_a - s_b)^2 = 1 + (1 + 0 + 0.25)
    assert frechet_distance(a, b) == pytest.approx(2.25, rel=0.02)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_distance_needs_two_samples():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))


class ConstantPrior:
    prior_stages = ("proposal",)

    def __init__(self, digits):
        self.digits = digits

    def prior(self, start, n, g):
        return {"proposal": images_of(self.digits[start:start + n])}


def test_prior_metrics_flag_a_collapsed_generator():
    from model.evaluate import prior_metrics

    feats = lambda x, m: x.flatten(1)[:, :4].double().numpy() + np.random.default_rng(0).standard_normal((len(x), 4))
    real = [np.random.default_rng(m).standard_normal((100, 4)) for m in range(M)]
    collapsed = prior_metrics(ConstantPrior(torch.full((100, M), 4)), clf, feats, real, 100, 100, batch=30,
                              progress=False)["proposal"]
    assert collapsed["joint_coherence"] == 1.0 and collapsed["digit_entropy"] == 0.0
    ideal = prior_metrics(ConstantPrior(labels[:, None].expand(-1, M)), clf, feats, real, 100, 100, batch=30,
                          progress=False)["proposal"]
    assert ideal["joint_coherence"] == 1.0 and ideal["digit_entropy"] == pytest.approx(1.0)
    assert len(ideal["fd"]) == M and ideal["fd_mean"] >= 0


def test_wilson_interval_covers_the_share_and_narrows_with_n():
    lo, hi = wilson_interval(40, 50)
    assert lo < 0.8 < hi and (lo, hi) == pytest.approx((0.6696, 0.8876), abs=1e-3)   # the textbook values
    lo2, hi2 = wilson_interval(400, 500)
    assert lo < lo2 < 0.8 < hi2 < hi
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0, 1)
