"""Run by tests/test_distributed.py under torchrun: train a tiny model with model.train.train, then save the
weights this rank ended with (rank<r>.pt), so the test can compare the processes."""
import sys

import torch

import model.train as mt
from model.config import ModelConfig, TrainConfig

trained = {}
_init = mt.TrainStep.__init__


def _remember(self, model, cfg):  # the model this process trains
    _init(self, model, cfg)
    trained["model"] = model


def main(out_dir, mnist, cache, iters, resume):
    torch.set_num_threads(1)
    mt.TrainStep.__init__ = _remember
    cfg = TrainConfig(model=ModelConfig(n_modalities=3, latent_dim=4, width=8, ebm_width=8, ebm_features=16),
                      out_dir=out_dir, mnist=mnist, cache_dir=cache, iters=int(iters), batch_size=4, warmup_iters=1,
                      data_steps=2, latent_steps=2, log_every=1, sample_every=1000, ckpt_every=1000, eval_every=0,
                      classifier=None, device="cpu")
    mt.train(cfg, resume=resume == "resume")
    rank = torch.distributed.get_rank()
    torch.save(trained["model"].state_dict(), f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
