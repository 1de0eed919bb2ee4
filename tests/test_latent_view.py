"""The latent view (demo/latent.py): a fixed projection of z per checkpoint, the prior's components, the paths."""
import numpy as np
import torch

from demo.latent import SAMPLE_COLORS, latent_view, picture
from model.prior import GaussianMixture


def mixture(d=5):
    means = torch.zeros(3, d, dtype=torch.float64)
    means[1, 2], means[2, 2], means[2, 4] = 4.0, -4.0, 1.0      # spread mostly along z_2, a little along z_4
    return GaussianMixture(torch.tensor([0.5, 0.25, 0.25]), means, 0.1 * torch.eye(d).expand(3, d, d).clone())


def test_projection_is_the_weighted_pca_of_the_means_and_fixed():
    view = latent_view(mixture(), 5)
    assert np.allclose(view.axes @ view.axes.T, np.eye(2), atol=1e-9)        # orthonormal axes
    assert abs(view.axes[0, 2]) > 0.99 and view.axes[0, 2] > 0      # the first: the largest spread, its sign fixed
    assert abs(view.axes[1, 4]) > 0.99
    again = latent_view(mixture(), 5)
    assert np.array_equal(view.axes, again.axes) and np.array_equal(view.means, again.means)
    assert np.allclose(view.project(np.array(mixture().means.numpy()[1])), view.means[1], atol=1e-6)
    r = np.linalg.norm(view.ellipses[0] - view.means[0], axis=1)
    assert np.allclose(r, np.sqrt(0.1), atol=1e-6)                              # 1 sd of an isotropic component


def test_without_an_ex_post_prior_the_first_two_coordinates():
    view = latent_view(None, 4)
    z = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert np.allclose(view.project(z), [[1.0, 2.0]]) and "no ex-post prior" in view.what


def test_picture_draws_each_samples_path_in_its_colour():
    view = latent_view(mixture(), 5)
    empty = picture(view, [])
    z = np.stack([np.linspace(-3, 3, 10)[:, None] * np.eye(5)[2] + b for b in range(2)], 1)   # [T, B, d]
    drawn = picture(view, [("latent", view.project(f)) for f in z])
    assert empty.shape == drawn.shape == (540, 720, 3)
    for b in range(2):
        rgb = np.array([int(SAMPLE_COLORS[b][i:i + 2], 16) for i in (1, 3, 5)])
        assert not (np.abs(empty.astype(int) - rgb).sum(-1) < 10).any()
        assert (np.abs(drawn.astype(int) - rgb).sum(-1) < 10).sum() > 50, b
