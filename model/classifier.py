"""Per-modality digit classifiers: the judges of coherence and the feature space of the Fréchet
distance. Two independent families (a coherence claim holds only where both agree):

- ``tiny`` (checkpoints/classifier): the field's tiny CNN (conv 4x4 s2 3->10, dropout, conv 4x4 s2
  10->20, linear 980->128->10), one per modality, trained on clean images.
- ``vgg`` (checkpoints/classifier_b): a different architecture (3x3 convs 8-16 with batch norm and max
  pooling, linear 784->64->10), one per modality, trained with blur and noise
  augmentation (``augment``) so that blurry and sharp samples are read alike.

Train: python -m model.classifier --mnist ../shared/data/mnist.npz --out checkpoints/classifier
       python -m model.classifier --mnist ../shared/data/mnist.npz --arch vgg --augment --epochs 3 --lr 2e-3 \
           --train-seed 1 --out checkpoints/classifier_b
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .networks import HubMixin


@dataclass
class ClassifierConfig:
    n_modalities: int = 5
    data_seed: int = 0
    hidden: int = 128
    dropout: float = 0.5
    arch: str = "tiny"      # "tiny" (the field's CNN) or "vgg" (the second, independent judge family)
    augment: bool = False   # trained with blur and noise augmentation (recorded; see ``augment``)


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


class VGGClassifier(nn.Module):
    """The second judge family: 3x3 convs with batch norm and max pooling, then a linear layer."""

    def __init__(self, hidden=64):
        super().__init__()
        block = lambda i, o: [nn.Conv2d(i, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(
            *block(3, 8),                              # 14x14
            *block(8, 16),                             # 7x7
            nn.Flatten(), nn.Linear(16 * 7 * 7, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.out(self.features(x))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images x [B, 3, H, W] by a Gaussian of std ``sigma`` pixels (separable, replicate padding)."""
    r = 3
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1)                         # [3, 7]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=x.shape[1])
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=x.shape[1])


BLUR_LEVELS = (0.6, 1.0, 1.4)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur and noise, per image, so that blurry (VAE-like) and sharp images are read alike: about a
    quarter of each batch clean, the rest blurred (std 0.6, 1.0 or 1.4 px, each equally often), half
    of those with Gaussian noise of std ~ U(0, 0.15). x: [B, 3, 28, 28] in [0, 1]."""
    b = x.shape[0]
    level = torch.randint(len(BLUR_LEVELS) + 1, (b,), generator=generator)   # 0 = clean
    y = x.clone()
    for i, sigma in enumerate(BLUR_LEVELS, 1):
        pick = level == i
        if pick.any():
            y[pick] = gaussian_blur(x[pick], sigma)
    noisy = (level > 0) & (torch.rand(b, generator=generator) < 0.5)
    std = 0.15 * torch.rand(b, generator=generator) * noisy
    y = y + std[:, None, None, None] * torch.randn(x.shape, generator=generator)
    return y.clamp(0, 1)


class Classifiers(nn.Module, HubMixin, library_name="multimodal-ebm-mcmc-revision",
                  tags=["polymnist", "classifier"], license="mit"):
    """One digit classifier per modality. Input [B, M, 3, 28, 28] in [0, 1]."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if isinstance(config, dict):  # from config.json
            config = ClassifierConfig(**config)
        self.config = config
        make = {"tiny": lambda: DigitClassifier(config.hidden, config.dropout),
                "vgg": lambda: VGGClassifier(config.hidden)}
        if config.arch not in make:
            raise ValueError(f"classifier arch must be one of {sorted(make)}, got {config.arch!r}")
        self.nets = nn.ModuleList(make[config.arch]() for _ in range(config.n_modalities))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, M, 10]."""
        return torch.stack([net(x[:, m]) for m, net in enumerate(self.nets)], dim=1)

    def features(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """The hidden features of modality m's classifier (Fréchet distance space; 128-d for 'tiny')."""
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


def train_classifiers(train, test, n_modalities, epochs=3, batch=128, lr=1e-3, seed=0, log=print,
                      arch="tiny", hidden=None, use_augment=False, train_seed=None):
    """seed: the data seed (recorded); train_seed: the initialisation and batch order (default: seed)."""
    train_seed = seed if train_seed is None else train_seed
    torch.manual_seed(train_seed)
    hidden = hidden or (128 if arch == "tiny" else 64)
    clf = Classifiers(ClassifierConfig(n_modalities, data_seed=seed, hidden=hidden, arch=arch, augment=use_augment))
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    g = torch.Generator().manual_seed(train_seed)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.75)
    for epoch in range(epochs):
        clf.train()
        perm = torch.randperm(len(train), generator=g)
        for i in tqdm(range(0, len(perm), batch), desc=f"classifier epoch {epoch + 1}/{epochs}"):
            x, y = train.batch(perm[i:i + batch])
            if use_augment:
                x = augment(x.flatten(0, 1), g).view(x.shape)
            loss = F.cross_entropy(clf(x).flatten(0, 1), y.repeat_interleave(n_modalities))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        acc = accuracy(clf, test)
        log(f"epoch {epoch + 1}: test accuracy per modality {[round(a, 4) for a in acc]}")
    return clf, acc


def accuracy(clf, data, batch=2000, blur: float = 0.0) -> list[float]:
    """Test accuracy per modality; ``blur`` > 0: of images blurred by a Gaussian of that std (pixels)."""
    correct = torch.zeros(clf.config.n_modalities)
    for i in range(0, len(data), batch):
        x, y = data.batch(slice(i, i + batch))
        if blur > 0:
            flat = x.flatten(0, 1)
            x = gaussian_blur(flat, blur).view(x.shape)
        digit, _ = clf.predict(x)
        correct += (digit == y[:, None]).float().sum(0)
    return (correct / len(data)).tolist()


def main(argv=None):
    from .data import DataError, MNISTError, load_dataset

    from .cli import ConfigParser, HelpFormatter, add_data_args

    p = ConfigParser(prog="python -m model.classifier", description=__doc__, formatter_class=HelpFormatter)
    add_data_args(p)
    p.add_argument("--modalities", type=int, default=5, help="number of modalities M")
    p.add_argument("--seed", type=int, default=0, help="data seed (must match the model's)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (decayed by 0.75 per epoch)")
    p.add_argument("--arch", choices=("tiny", "vgg"), default="tiny", help="judge family (see the module doc)")
    p.add_argument("--augment", action="store_true", help="train with blur and noise augmentation")
    p.add_argument("--train-seed", type=int, default=None, help="initialisation and batch order (default: --seed)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default="runs/classifier", help="output folder (safetensors, config, accuracy.json); "
                   "the shipped judges are checkpoints/classifier and checkpoints/classifier_b")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        train = load_dataset("train", a.modalities, a.seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
        test = load_dataset("test", a.modalities, a.seed, a.mnist, a.cache_dir, a.dataset, a.data_dir)
    except (DataError, MNISTError) as e:
        p.exit(1, f"error: {e}\n")
    t0 = time.time()
    clf, acc = train_classifiers(train, test, a.modalities, a.epochs, lr=a.lr, seed=a.seed, arch=a.arch,
                                 use_augment=a.augment, train_seed=a.train_seed)
    clf.save_pretrained(a.out)
    blurred = accuracy(clf, test, blur=1.0)
    Path(a.out, "accuracy.json").write_text(json.dumps(
        {"test_accuracy": acc, "test_accuracy_blur1": blurred, "arch": a.arch, "augment": a.augment,
         "epochs": a.epochs, "data_seed": a.seed, "train_seed": a.train_seed, "minutes": (time.time() - t0) / 60,
         "command": "python -m model.classifier " + " ".join(argv if argv is not None else sys.argv[1:])},
        indent=2))
    print(f"saved {a.out}; test accuracy {acc}")


if __name__ == "__main__":
    main()
