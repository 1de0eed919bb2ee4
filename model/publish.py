"""Publish a checkpoint as a Hugging Face Hub model repo:

    python -m model.publish --checkpoint runs/full/checkpoint --repo-id ORG/NAME --dry-run   # the folder only
    python -m model.publish --checkpoint runs/full/checkpoint --repo-id ORG/NAME             # and upload it

The folder (``--out``, default ``hub/<NAME>``) holds what the Hub repo needs: ``model.safetensors`` and
``config.json`` (loadable with ``MultimodalEBMVAE.from_pretrained``), ``train_config.json``, the evaluation's
``metrics.json`` when there is one, the ex-post prior (``prior.safetensors`` + ``prior.json``) and the demo's
energy check (``energy_check.json``) when they are beside the weights, and ``README.md``: the checkpoint's own
model card when it has one (CHECKPOINT/README.md written by hand, as the bundled checkpoints have: it is
published as it is), else a card made from the run: that checkpoint's metrics table, the training and
evaluation commands, the data recipe and the licence. The upload uses huggingface_hub (``create_repo`` +
``upload_folder``; log in first with ``hf auth login`` or set ``HF_TOKEN``).

Metrics are read from ``--metrics FILE`` or else the first of CHECKPOINT/metrics.json,
CHECKPOINT/eval/metrics.json, CHECKPOINT/../eval/metrics.json (where ``model.evaluate`` writes by default).
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
from pathlib import Path

from .config import TrainConfig
from .hub import OPTIONAL_FILES
from .prior import PRIOR_FILE

LICENSE = "mit"
PAPER = ("arXiv 2605.00644 (Learning Multimodal Energy-Based Model with Multimodal Variational Auto-Encoder via "
         "MCMC Revision, TMLR 2026)")


class PublishError(RuntimeError):
    """Something to publish is missing or the upload failed (one-line message)."""


def find_metrics(checkpoint: Path, metrics: str | Path | None = None) -> Path | None:
    if metrics:
        if not Path(metrics).is_file():
            raise PublishError(f"metrics file not found: {str(metrics)!r}")
        return Path(metrics)
    for p in (checkpoint / "metrics.json", checkpoint / "eval" / "metrics.json",
              checkpoint.parent / "eval" / "metrics.json"):
        if p.is_file():
            return p
    return None


def flat_model(model_cfg) -> dict:
    """A ModelConfig's fields with its chain settings by their flat names (the --model.* flags)."""
    fields = {g.name: getattr(model_cfg, g.name) for g in dataclasses.fields(model_cfg) if g.name != "chains"}
    return {**fields, **model_cfg.chains.flat()}


def train_command(cfg: TrainConfig) -> str:
    """The `python -m model.train` command that reproduces ``cfg`` (every field that differs from the defaults)."""
    default = TrainConfig()
    args = ["python", "-m", "model.train"]

    def flag(name, value):
        v = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        args.extend([f"--{name.replace('_', '-')}", v])

    for f in dataclasses.fields(TrainConfig):
        if f.name == "model":   # the networks' fields, then the chains' knobs by their flat names (model.cli)
            ours, base = flat_model(cfg.model), flat_model(default.model)
            for name, value in ours.items():
                if value != base[name]:
                    flag("model." + name, value)
        elif f.name not in ("threads", "device") and getattr(cfg, f.name) != getattr(default, f.name):
            flag(f.name, getattr(cfg, f.name))
    return " ".join(shlex.quote(a) for a in args)


def evaluate_command(r: dict, checkpoint: str) -> str:
    s = r["settings"]
    args = ["python", "-m", "model.evaluate", "--checkpoint", checkpoint, "--n-cond", s["n_cond"], "--n-joint",
            s["n_joint"], "--n-fid", s["n_fid"], "--seed", s["seed"], "--batch", s["batch"]]
    ch = s.get("chains") or {}
    if ch:
        args += ["--latent-steps", ch["latent_steps"], "--data-steps", ch["data_steps"]]
        if ch.get("data_init") == "noise":
            args += ["--data-init", "noise"]
    if r.get("curve"):
        args += ["--n-curve", r["curve"]["n"], "--curve-steps", ",".join(map(str, r["curve"]["steps"]))]
    else:
        args += ["--curve-steps", "''"]
    if s.get("inception"):
        args += ["--inception", "INCEPTION_STATE_DICT"]
    return " ".join(str(a) for a in args) + " --mnist MNIST.npz"


def data_recipe(cfg: TrainConfig | None, model_cfg) -> str:
    if cfg is not None and cfg.dataset == "polymnist":
        return ("The released PolyMNIST (Sutter et al., 2021): `train/` and `test/` with one folder per modality "
                "`m0`..`m4` of PNG files `<index>.<label>.png`, read with `--dataset polymnist --data-dir PATH`.")
    from .data import DATA_VERSION

    return (f"The PolyMNIST-style set that `model.data` builds offline from MNIST (recipe {DATA_VERSION}, data seed "
            f"{model_cfg.data_seed}, M = {model_cfg.n_modalities}): modality 0 is plain ink, modalities 1-4 procedural "
            f"textures made with numpy from the seed; the PolyMNIST recipe (binarise the digit, a random 28x28 crop of "
            f"the texture, colours inverted where the digit is); tuples paired by label, each modality from a "
            f"different MNIST image. Same seed, same tensors. MNIST: torchvision's download or `--mnist FILE.npz` "
            f"(Keras layout).")


def own_card(checkpoint: Path) -> str | None:
    """CHECKPOINT/README.md when it is a model card written for the checkpoint (front matter and a title), not
    the placeholder huggingface_hub's save_pretrained writes beside every save."""
    path = checkpoint / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.startswith("---\n") or "[More Information Needed]" in text or "\n# " not in text:
        return None
    return text


def model_card(repo_id: str, model_cfg, cfg: TrainConfig | None, metrics: dict | None, checkpoint: str) -> str:
    from .evaluate import markdown

    name = repo_id.split("/")[-1]
    lines = ["---", f"license: {LICENSE}", "library_name: multimodal-ebm-mcmc-revision",
             "tags: [energy-based-model, multimodal-vae, langevin, polymnist]", "---", "",
             f"# {name}: multimodal EBM + MoE VAE learned by MCMC revision", "",
             f"A joint energy-based model over {model_cfg.n_modalities} image modalities, a shared-latent generator "
             f"(z in R^{model_cfg.latent_dim}, one decoder per modality) and a mixture-of-experts inference model, "
             f"trained together with MCMC revisions, as in {PAPER}"
             + (f" (variant `{cfg.variant}`)." if cfg else "."), "",
             "```python",
             "from model import Sampler   # pip install the repository's package",
             f'sampler = Sampler.from_pretrained("{repo_id}")   # the weights, the ex-post prior, the chain settings',
             "joint = sampler.joint(8)                         # eight joint samples, drawn from the prior",
             "```", "", "## Metrics", ""]
    if metrics:
        table = markdown(metrics).split("\n", 2)[2]   # without its '# Evaluation' title
        lines += [table.strip(), ""]
    else:
        lines += ["No evaluation was found beside this checkpoint (run `python -m model.evaluate --checkpoint ...` "
                  "and publish again to include its table).", ""]
    lines += ["## Training", ""]
    if cfg is not None:
        lines += ["```bash", train_command(cfg), "```", "",
                  "(every field of `train_config.json` that differs from the defaults; `--mnist` / `--data-dir` as on "
                  "the machine that trained it; under torchrun `--batch-size` is per process.)", ""]
        if cfg.init_from:
            lines += [f"The run started from the weights of another run, `{cfg.init_from}` (`--init-from`), made "
                      f"first with its own `train_config.json`"
                      + (f"; these parts were not taken from it: {', '.join(cfg.init_skip_parts)}"
                         if cfg.init_skip_parts else "") + ".", ""]
    else:
        lines += ["No `train_config.json` was found beside this checkpoint.", ""]
    if metrics:
        lines += ["## Evaluation", "", "```bash", evaluate_command(metrics, checkpoint), "```", ""]
    lines += ["## Data", "", data_recipe(cfg, model_cfg), "",
              "## Licence", "",
              "MIT (the code and these weights). MNIST: Yann LeCun and Corinna Cortes, CC BY-SA 3.0.", ""]
    return "\n".join(lines)


def build_folder(checkpoint: str | Path, repo_id: str, out: str | Path, metrics: str | Path | None = None) -> Path:
    from .networks import MultimodalEBMVAE

    checkpoint, out = Path(checkpoint), Path(out)
    if not (checkpoint / "config.json").is_file() or not (checkpoint / "model.safetensors").is_file():
        raise PublishError(f"no checkpoint at {str(checkpoint)!r} (expected config.json + model.safetensors)")
    try:
        model = MultimodalEBMVAE.from_pretrained(str(checkpoint), strict=True)
    except Exception as e:
        raise PublishError(f"the checkpoint {str(checkpoint)!r} does not load ({type(e).__name__})") from None
    cfg = None
    for tc in (checkpoint / "train_config.json", checkpoint.parent / "train_config.json"):
        if tc.is_file():
            cfg = TrainConfig.from_json(tc)
            break
    mpath = find_metrics(checkpoint, metrics)
    r = json.loads(mpath.read_text()) if mpath else None
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    if cfg is not None:
        cfg.to_json(out / "train_config.json")
    if mpath:
        shutil.copyfile(mpath, out / "metrics.json")
    for name in (*OPTIONAL_FILES, Path(PRIOR_FILE).with_suffix(".json").name):   # the prior, its fit record, the
                                                                                 # energy check
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, out / name)
    card = own_card(checkpoint) or model_card(repo_id, model.config, cfg, r, str(checkpoint))
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def upload(folder: Path, repo_id: str, private: bool = False) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message="Upload model (python -m model.publish)")
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise PublishError(f"upload to {repo_id} failed ({type(e).__name__}: {reason}); "
                           f"the folder is {folder}") from None
    return getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}"


def main(argv=None):
    from .cli import ConfigParser, HelpFormatter

    p = ConfigParser(prog="python -m model.publish", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a model folder (config.json + model.safetensors)")
    p.add_argument("--repo-id", required=True, help="the Hub model repo, ORG/NAME")
    p.add_argument("--out", default=None, help="where to write the repo's folder (default: hub/NAME)")
    p.add_argument("--metrics", default=None, help="the checkpoint's metrics.json (default: found beside it)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", action="store_true", help="write the folder only; upload nothing")
    a = p.parse_args(argv)
    if a.repo_id.count("/") != 1 or not all(a.repo_id.split("/")):
        p.exit(2, f"error: --repo-id must be ORG/NAME, got {a.repo_id!r}\n")
    try:
        folder = build_folder(a.checkpoint, a.repo_id, a.out or Path("hub") / a.repo_id.split("/")[1], a.metrics)
        print(f"wrote {folder}: " + ", ".join(sorted(f.name for f in folder.iterdir())))
        if a.dry_run:
            print("dry run: nothing uploaded")
            return
        print(f"uploaded: {upload(folder, a.repo_id, a.private)}")
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
