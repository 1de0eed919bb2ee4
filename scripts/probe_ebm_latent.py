"""A probe, not part of the paper's sampler: can the joint EBM fix joint (unconditional) coherence if
its chain runs in latent space, through the generator, instead of in data space?

    python -m scripts.probe_ebm_latent [CHECKPOINT] [CLASSIFIER]     (defaults: checkpoints/mebm, checkpoints/classifier)

1,000 prior samples z ~ N(0, I). Langevin on U(z) = E(G(z)) + ||z||^2 / 2 (the EBM's density pulled back
to the latent space, times the prior), 50 steps at a few step sizes s / noise n, then decode, then the
usual 30 data-space steps. Prints the joint coherence after each stage. Data-space chains barely move a
digit's class (the README's table), a latent chain can. Seeds fixed; one thread.
"""
import sys

import torch

from model import MultimodalEBMVAE
from model.classifier import Classifiers
from model.langevin import data_revision, langevin, run
from model.metrics import joint_coherence


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ck = argv[0] if len(argv) > 0 else "checkpoints/mebm"
    clf_path = argv[1] if len(argv) > 1 else "checkpoints/classifier"
    torch.set_num_threads(1)
    m = MultimodalEBMVAE.from_pretrained(ck).eval()
    clf = Classifiers.from_pretrained(clf_path).eval()
    G, E = m.generator, m.energy
    for p in m.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1000, m.config.latent_dim, generator=g)
    with torch.no_grad():
        x = G(z0)
    print("prior proposal joint", joint_coherence(clf, x))

    def U(z):
        return E(G(z)) + 0.5 * (z ** 2).sum(1)

    for s, n, steps in [(0.1, 0.1, 50), (0.3, 0.3, 50), (0.3, 0.03, 50), (1.0, 0.1, 50)]:
        st = run(langevin(U, z0, steps, s, n, generator=torch.Generator().manual_seed(1), max_abs=50))
        with torch.no_grad():
            xz = G(st.x)
        xd = run(data_revision(E, xz, 30, 1.0, 0.01, generator=torch.Generator().manual_seed(2))).x
        print(f"s={s} n={n} steps={steps}: |dz|={(st.x - z0).norm(dim=1).mean():.2f} "
              f"E {U(z0).mean():.2f}->{st.energy.mean():.2f} "
              f"joint latent {joint_coherence(clf, xz):.3f} +data {joint_coherence(clf, xd):.3f}", flush=True)


if __name__ == "__main__":
    main()
