"""Run by tests/test_distributed.py under torchrun: train a tiny model with the training command's own entry point
(model.train.main), then save the weights this rank ended with (rank<r>.pt), so the test can compare the processes."""
import sys

import torch

import model.train as mt

trained = {}
_init = mt.TrainStep.__init__


def _remember(self, model, cfg, *rest):  # the model this process trains
    _init(self, model, cfg, *rest)
    trained["model"] = model


def main(out_dir, mnist, cache, iters, resume):
    torch.set_num_threads(1)
    mt.TrainStep.__init__ = _remember
    mt.main(["--model.n-modalities", "3", "--model.latent-dim", "4", "--model.width", "8", "--model.ebm-width", "8",
             "--model.ebm-features", "16", "--out-dir", out_dir, "--mnist", mnist, "--cache-dir", cache,
             "--iters", iters, "--batch-size", "4", "--warmup-iters", "1", "--data-steps", "2", "--latent-steps", "2",
             "--log-every", "1", "--sample-every", "1000", "--ckpt-every", "1000", "--eval-every", "0",
             "--classifier", "none", "--device", "cpu"] + (["--resume"] if resume == "resume" else []))
    rank = torch.distributed.get_rank()
    torch.save(trained["model"].state_dict(), f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
