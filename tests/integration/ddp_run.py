"""Launched by torchrun from test_ddp.py: runs the CTC recipe with a
pruning stage on this rank and writes what the rank ended with."""

import sys

import speechbrain as sb
import torch
from recipe_runner import TINY_CORPUS, build, fit, tiny_overrides


def main(out, data, epochs):
    run_opts = {"distributed_backend": "gloo"}
    sb.utils.distributed.ddp_init_group(run_opts)
    overrides = tiny_overrides(
        out,
        data,
        {
            "embedded_corpus": TINY_CORPUS,
            "prune_start_epoch": 2,
            "prune_target": 0.4,
            "number_of_epochs": int(epochs),
            # SpeechBrain turns BatchNorm into SyncBatchNorm under DDP, which
            # runs on GPUs only: no DNN block (BatchNorm) on CPU.
            "dnn_blocks": 0,
            "dnn_neurons": 48,  # the bidirectional RNN output (2 x 24)
        },
    )
    brain, hparams, datasets = build(
        "CTC", "train_pruned.yaml", overrides, run_opts
    )
    fit(brain, hparams, datasets)
    modules = {
        k: (m.module if hasattr(m, "module") else m)
        for k, m in brain.modules.items()
    }
    state = {
        f"{k}.{n}": v.detach().clone()
        for k, m in modules.items()
        for n, v in m.state_dict().items()
    }
    rank = torch.distributed.get_rank()
    torch.save(
        {
            "state": state,
            "plan": hparams["pruner"].plan.to_dict(),
            "epoch": hparams["epoch_counter"].current,
            "wrapped": sorted(
                k for k, m in brain.modules.items() if hasattr(m, "module")
            ),
        },
        f"{out}/rank{rank}.pt",
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
