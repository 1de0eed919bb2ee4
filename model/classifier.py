"""Per-modality digit classifiers: the judges of coherence and the feature space of the Fréchet
distance. The field's tiny CNN (conv 4x4 s2 3->10, dropout, conv 4x4 s2 10->20, linear 980->128->10),
one per modality.

Train: python -m model.classifier --mnist ../shared/data/mnist.npz --out checkpoints/classifier
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from tqdm import tqdm


@dataclass
class ClassifierConfig:
    n_modalities: int = 5
    data_seed: int = 0
    hidden: int = 128
    dropout: float = 0.5


class DigitClassifier(nn.Module):
    def __init__(self, hidden=128, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 10, 4, 2, 1), nn.ReLU(), nn.Dropout(dropout),
            nn.Conv2d(10, 20, 4, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(980, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.out(self.features(x))


class Classifiers(nn.Module, PyTorchModelHubMixin, library_name="multimodal-ebm-mcmc-revision",
                  tags=["polymnist", "classifier"], license="mit"):
    """One digit classifier per modality. Input [B, M, 3, 28, 28] in [0, 1]."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if isinstance(config, dict):  # from config.json
            config = ClassifierConfig(**config)
        self.config = config
        self.nets = nn.ModuleList(DigitClassifier(config.hidden, config.dropout) for _ in range(config.n_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, M, 10]."""
        return torch.stack([net(x[:, m]) for m, net in enumerate(self.nets)], dim=1)

    def features(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """The 128-d hidden features of modality m's classifier (Fréchet distance space)."""
        return self.nets[m].features(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """(digits [B, M], confidences [B, M]) in eval mode."""
        was = self.training
        self.eval()
        probs = torch.cat([self(x[i:i + batch]).softmax(-1) for i in range(0, len(x), batch)])
        self.train(was)
        conf, digit = probs.max(-1)
        return digit, conf


def train_classifiers(train, test, n_modalities, epochs=3, batch=128, lr=1e-3, seed=0, log=print):
    torch.manual_seed(seed)
    clf = Classifiers(ClassifierConfig(n_modalities, data_seed=seed))
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.75)
    for epoch in range(epochs):
        clf.train()
        perm = torch.randperm(len(train), generator=g)
        for i in tqdm(range(0, len(perm), batch), desc=f"classifier epoch {epoch + 1}/{epochs}"):
            x, y = train.batch(perm[i:i + batch])
            loss = F.cross_entropy(clf(x).flatten(0, 1), y.repeat_interleave(n_modalities))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        acc = accuracy(clf, test)
        log(f"epoch {epoch + 1}: test accuracy per modality {[round(a, 4) for a in acc]}")
    return clf, acc


def accuracy(clf, data, batch=2000) -> list[float]:
    correct = torch.zeros(clf.config.n_modalities)
    for i in range(0, len(data), batch):
        x, y = data.batch(slice(i, i + batch))
        digit, _ = clf.predict(x)
        correct += (digit == y[:, None]).float().sum(0)
    return (correct / len(data)).tolist()


def main(argv=None):
    from .data import DataError, MNISTError, load_dataset

    from .cli import ConfigParser, HelpFormatter

    p = ConfigParser(prog="python -m model.classifier", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--mnist", default=None, help="local MNIST .npz or torchvision root (default: download)")
    p.add_argument("--cache-dir", default="data_cache", help="where the built data set is cached")
    p.add_argument("--dataset", choices=("builtin", "polymnist"), default="builtin",
                   help="builtin: the PolyMNIST-style set built from MNIST; polymnist: the released files in --data-dir")
    p.add_argument("--data-dir", default=None, help="the PolyMNIST release (train/ and test/ with m0..m4)")
    p.add_argument("--modalities", type=int, default=5, help="number of modalities M")
    p.add_argument("--seed", type=int, default=0, help="data seed (must match the model's)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--out", default="checkpoints/classifier", help="output folder (safetensors, config, accuracy.json)")
    a = p.parse_args(argv)
    try:
        train = load_dataset("train", a.modalities, a.seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
        test = load_dataset("test", a.modalities, a.seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
    except (DataError, MNISTError) as e:
        p.exit(1, f"error: {e}\n")
    t0 = time.time()
    clf, acc = train_classifiers(train, test, a.modalities, a.epochs, seed=a.seed)
    clf.save_pretrained(a.out)
    Path(a.out, "accuracy.json").write_text(json.dumps(
        {"test_accuracy": acc, "epochs": a.epochs, "data_seed": a.seed, "minutes": (time.time() - t0) / 60}, indent=2))
    print(f"saved {a.out}; test accuracy {acc}")


if __name__ == "__main__":
    main()
