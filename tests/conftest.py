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


# ---------------------------------------------------------------- the slow tests
# Tests that take more than a few seconds on a busy 2-core machine: a served app streamed over HTTP,
# end-to-end train / evaluate / sample runs, commands run in a subprocess. `python -m pytest -q` runs
# everything; `python -m pytest -q -m "not slow"` is the quick check while developing. (Chromium, torchrun and
# the released-PolyMNIST run carry @pytest.mark.slow in their own files.)
SLOW_MODULES = {"test_app_http.py", "test_browser_security.py", "test_browser_lesson.py", "test_browser_figures.py",
                "test_evaluate.py", "test_sample.py"}
SLOW_TESTS = {
    "test_app.py": {"test_ex_post_prior_of_the_shipped_checkpoint", "test_share_link_decoder_is_bounded",
                    "test_missing_classifier_missing_model_and_mismatched_checkpoint"},
    "test_messages.py": {"test_evaluate_bad_checkpoint_is_one_line",
                         "test_train_and_evaluate_on_bad_mnist_exit_with_one_line"},
    "test_resume.py": {"test_corrupt_state_falls_back_or_says_so", "test_resume_nothing_from_the_shell_is_one_line"},
    "test_networks.py": {"test_moe_density_integrates_to_one_and_matches_its_samples"},
    "test_hub.py": {"test_app_reports_hub_cache"},
    "test_scripts.py": {"test_tune_chains_scores_every_setting_on_training_tuples"},
    "test_readme.py": {"test_load_snippet_runs_from_another_folder", "test_documented_flags_exist_in_help",
                       "test_recipe_steps_use_known_flags"},
    "test_render_player.py": {"test_model_package_does_not_import_gradio"},
    "test_cli.py": {"test_variant_bogus_from_the_shell_has_no_traceback"},
    "test_cost_table.py": {"test_cells_rows_and_counts", "test_command_writes_one_row_per_cell"},
}


def pytest_collection_modifyitems(items):
    for item in items:
        name = item.path.name
        if name in SLOW_MODULES or getattr(item, "originalname", item.name) in SLOW_TESTS.get(name, ()):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter):
    """The browser test's measured delays between the last stroke and the press of Run (reported, not tested)."""
    delays = [value for key in ("passed", "failed") for report in terminalreporter.stats.get(key, [])
              for name, value in getattr(report, "user_properties", ()) if name == "run_delay_ms"]
    if delays:
        terminalreporter.write_line(f"browser: Run pressed {min(delays):.0f} to {max(delays):.0f} ms after the last "
                                    f"stroke ({len(delays)} presses, the page's clock)")
