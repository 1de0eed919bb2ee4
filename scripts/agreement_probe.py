"""Can the joint EBM's architecture read whether the modalities agree? A discriminative probe, no sampling.

Mismatched tuples (each real tuple with one modality, uniform, replaced by that modality of a tuple showing another
digit) have real images: only an energy that compares the modalities ranks them above the real tuples. This trains,
on the training split, small readers of the checkpoint's EBM and reports on held-out test tuples:

1. digits: a linear read-out of each modality's digit from the EBM trunk's features (frozen): do the features
   carry the digit at all?
2. head concat / head pairwise: a fresh head on the frozen trunks, trained by the mismatch loss alone
   (mean softplus(E(real) - E(mismatched)), as --ebm-mismatch-share), the shipped head's shape (an MLP on the
   concatenated features) against the pairwise head (--model.ebm-head pairwise: each modality's features projected,
   energy minus the sum of the pairs' dot products);
3. whole EBM: the checkpoint's EBM, trunks and head (concat as shipped, or with a fresh pairwise agreement term),
   trained by the same loss alone.

The figures are the AUROC of the energy separating real from mismatched test tuples (pairs across tuples; 0.5: blind,
1: every real tuple lower) and the paired share (each mismatched tuple against its own real tuple: how often the real
one is the lower). CPU, one thread: about 10 minutes.

    python -m scripts.agreement_probe --checkpoint checkpoints/mebm --mnist ../shared/data/mnist.npz
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from model.data import load_polymnist
from model.energy_check import auroc, mismatched, paired_share
from model.evaluate import load_sampler
from model.networks import EnergyModel, MultimodalEBMVAE, PairwiseAgreement


def features(E, x, batch=500):
    with torch.no_grad():
        return torch.cat([torch.stack([t(2 * x[i:i + batch, m] - 1) for m, t in enumerate(E.trunks)], 1)
                          for i in range(0, len(x), batch)])


def fit(params, loss_fn, iters, lr, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(params, lr)
    for it in range(iters):
        loss = loss_fn(it)
        opt.zero_grad()
        loss.backward()
        opt.step()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m scripts.agreement_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/mebm", help="model folder whose EBM is probed")
    p.add_argument("--mnist", default=None, help="local mnist.npz (default: torchvision download)")
    p.add_argument("--cache-dir", default="data_cache", help="where the built data set is cached")
    p.add_argument("--n-train", type=int, default=20000, help="training tuples the readers learn from")
    p.add_argument("--n-test", type=int, default=2000, help="held-out test tuples the AUROC is measured on")
    p.add_argument("--iters", type=int, default=1500, help="Adam steps of each frozen-trunk reader (batch 256)")
    p.add_argument("--whole-iters", type=int, default=600, help="Adam steps of the whole-EBM run (batch 64)")
    p.add_argument("--whole-lr", type=float, default=1e-4, help="Adam learning rate of the whole-EBM runs")
    p.add_argument("--whole-heads", default="concat,pairwise", help="the whole-EBM runs: comma-separated heads")
    p.add_argument("--save", default=None, help="save the model with the pairwise run's EBM here")
    p.add_argument("--seed", type=int, default=0, help="seed of the pairs, the batches and the fresh heads")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    model = load_sampler(a.checkpoint, device="cpu").model
    E, cfg = model.energy, model.config
    train, test = (load_polymnist(split, cfg.n_modalities, cfg.data_seed, a.mnist, a.cache_dir)
                   for split in ("train", "test"))
    g = torch.Generator().manual_seed(a.seed)
    tr = torch.randperm(len(train), generator=g)[:a.n_train]
    te = torch.randperm(len(test), generator=g)[:a.n_test]
    x_tr, y_tr = train.batch(tr)
    x_te, y_te = test.batch(te)
    mis_te = mismatched(test, x_te, y_te, torch.Generator().manual_seed(a.seed + 1))
    h_tr, h_te, hm_te = features(E, x_tr), features(E, x_te), features(E, mis_te)
    M, f = h_tr.shape[1], h_tr.shape[2]
    out = {"checkpoint": a.checkpoint, "n_train": a.n_train, "n_test": a.n_test}

    # 1. digits from each trunk's features
    torch.manual_seed(a.seed)
    lin = nn.Linear(f, 10 * M)
    def digit_loss(it):
        b = torch.randint(a.n_train, (256,), generator=g)
        logits = lin(h_tr[b]).view(256, M, 10, M).diagonal(dim1=1, dim2=3).transpose(1, 2)   # [B, M, 10]
        return F.cross_entropy(logits.reshape(-1, 10), y_tr[b].repeat_interleave(M))
    fit(lin.parameters(), digit_loss, a.iters, 1e-2, a.seed)
    with torch.no_grad():
        logits = lin(h_te).view(len(h_te), M, 10, M).diagonal(dim1=1, dim2=3).transpose(1, 2)
        out["digit_accuracy"] = (logits.argmax(-1) == y_te[:, None]).float().mean(0).tolist()
    print("digits", out["digit_accuracy"], flush=True)

    # 2. fresh heads on the frozen trunks: real against mismatched training tuples. The trunks read one modality
    #    each, so a mismatched tuple's features are the real tuple's with one modality's features swapped in
    def mismatched_features(b):
        donor = torch.randint(a.n_train, (len(b),), generator=g)
        while (same := y_tr[donor] == y_tr[b]).any():
            donor[same] = torch.randint(a.n_train, (int(same.sum()),), generator=g)
        m = torch.randint(M, (len(b),), generator=g)
        h = h_tr[b].clone()
        h[torch.arange(len(b)), m] = h_tr[donor, m]
        return h
    for name in ("concat", "pairwise"):   # a fresh EBM of that head; only its head (and agreement term) learns
        torch.manual_seed(a.seed)
        head = EnergyModel(dataclasses.replace(cfg, ebm_head=name))
        params = [*head.head.parameters(), *(head.agreement.parameters() if head.agreement is not None else [])]
        def head_loss(it, head=head):
            b = torch.randint(a.n_train, (256,), generator=g)
            e = head.joint_energy(torch.cat([h_tr[b], mismatched_features(b)]).flatten(1))
            return F.softplus(e[:256] - e[256:]).mean()
        fit(params, head_loss, a.iters, 1e-3, a.seed)
        with torch.no_grad():
            e, em = head.joint_energy(h_te.flatten(1)).numpy(), head.joint_energy(hm_te.flatten(1)).numpy()
            out[f"auroc_head_{name}"], out[f"paired_head_{name}"] = auroc(e, em), paired_share(e, em)
        print(name, out[f"auroc_head_{name}"], flush=True)

    # 3. the whole EBM, trunks and head (and for pairwise a fresh agreement term), by the mismatch loss alone
    with torch.no_grad():
        e, em = E(x_te).numpy(), E(mis_te).numpy()
        out["auroc_shipped"], out["paired_shipped"] = auroc(e, em), paired_share(e, em)
    for name in a.whole_heads.split(","):
        W = copy.deepcopy(E).requires_grad_(True)
        if name == "pairwise":
            torch.manual_seed(a.seed)
            W.agreement = PairwiseAgreement(M, f)
        def whole_loss(it, W=W):
            b = torch.randint(len(train), (64,), generator=g)
            x, y = train.batch(b)
            e = W(torch.cat([x, mismatched(train, x, y, g)]))
            return F.softplus(e[:64] - e[64:]).mean()
        fit(W.parameters(), whole_loss, a.whole_iters, a.whole_lr, a.seed)
        with torch.no_grad():
            e, em = W(x_te).numpy(), W(mis_te).numpy()
            out[f"auroc_whole_ebm_{name}"], out[f"paired_whole_ebm_{name}"] = auroc(e, em), paired_share(e, em)
        print("whole", name, out[f"auroc_whole_ebm_{name}"], flush=True)
        if a.save and name == "pairwise":   # the checkpoint's model with this EBM: a start for --init-from
            saved = MultimodalEBMVAE(dataclasses.replace(cfg, ebm_head="pairwise"))
            saved.load_state_dict({**model.state_dict(), **{f"energy.{k}": v for k, v in W.state_dict().items()}})
            saved.save_pretrained(a.save)
    out["minutes"] = (time.time() - t0) / 60
    print(json.dumps(out, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
