"""Launched by torchrun: runs the CTC recipe with a pruning stage on this
rank and writes what the rank ended with (``OUT/rank<r>.pt``).

``torchrun --nproc_per_node=2 ddp_run.py OUT DATA EPOCHS [BACKEND] [DEVICE]``
with BACKEND ``gloo`` (default; CPU, as test_ddp.py runs it) or ``nccl``,
and DEVICE ``cpu`` (default) or ``cuda`` (each rank takes
``cuda:<LOCAL_RANK>``). On CUDA the recipe keeps its DNN block, whose
BatchNorm SpeechBrain turns into SyncBatchNorm under DDP.
"""

import os
import sys
import time

import speechbrain as sb
import torch
from recipe_runner import TINY_CORPUS, build, fit, tiny_overrides


def main(out, data, epochs, backend="gloo", device="cpu"):
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    run_opts = {"distributed_backend": backend, "device": device}
    sb.utils.distributed.ddp_init_group(run_opts)
    extra = {
        "embedded_corpus": TINY_CORPUS,
        "prune_start_epoch": 2,
        "prune_target": 0.4,
        "number_of_epochs": int(epochs),
    }
    if device == "cpu":
        # SpeechBrain turns BatchNorm into SyncBatchNorm under DDP, which
        # runs on GPUs only: no DNN block (BatchNorm) on CPU.
        extra["dnn_blocks"] = 0
        extra["dnn_neurons"] = 48  # the bidirectional RNN output (2 x 24)
    overrides = tiny_overrides(out, data, extra)
    brain, hparams, datasets = build(
        "CTC", "train_pruned.yaml", overrides, run_opts
    )
    first = hparams["epoch_counter"].current
    start = time.time()
    fit(brain, hparams, datasets)
    seconds = time.time() - start
    modules = {
        k: (m.module if hasattr(m, "module") else m)
        for k, m in brain.modules.items()
    }
    state = {
        f"{k}.{n}": v.detach().cpu().clone()
        for k, m in modules.items()
        for n, v in m.state_dict().items()
    }
    rank = torch.distributed.get_rank()
    epochs_run = hparams["epoch_counter"].current - first
    torch.save(
        {
            "state": state,
            "plan": hparams["pruner"].plan.to_dict(),
            "epoch": hparams["epoch_counter"].current,
            "wrapped": sorted(
                k for k, m in brain.modules.items() if hasattr(m, "module")
            ),
            "backend": backend,
            "device": device,
            "fit_seconds": seconds,
            "epochs_run": epochs_run,
        },
        f"{out}/rank{rank}.pt",
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
