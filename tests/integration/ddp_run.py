"""Launched by torchrun: runs the CTC recipe with a pruning stage on this
rank and writes what the rank ended with (``OUT/rank<r>.pt``).

``torchrun --nproc_per_node=2 ddp_run.py OUT DATA EPOCHS [BACKEND] [DEVICE]
[MEASURE]`` with BACKEND ``gloo`` (default; CPU, as test_ddp.py runs it)
or ``nccl``, DEVICE ``cpu`` (default) or ``cuda`` (each rank takes
``cuda:<LOCAL_RANK>``) and MEASURE the recipe's ``prune_measure``
(``params`` by default; ``latency`` is timed on a simulated device, one
microsecond per parameter, so that the ranks' decision is deterministic).
On CUDA the recipe keeps its DNN block, whose BatchNorm SpeechBrain turns
into SyncBatchNorm under DDP.
"""

import os
import sys
import time

import speechbrain as sb
import torch
from recipe_runner import TINY_CORPUS, build, fit, tiny_overrides


def simulated_seconds(model, run, repeats, warmup):
    """A deterministic device: one microsecond per parameter."""
    return 1e-6 * sum(p.numel() for p in model.parameters())


def main(out, data, epochs, backend="gloo", device="cpu", measure="params"):
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    run_opts = {"distributed_backend": backend, "device": device}
    sb.utils.distributed.ddp_init_group(run_opts)
    extra = {
        "embedded_corpus": TINY_CORPUS,
        "prune_start_epoch": 2,
        "prune_target": 0.4,
        "number_of_epochs": int(epochs),
        "prune_measure": measure,
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
    if measure == "latency":
        setup = hparams["pruner"].latency
        setup.seconds, setup.repeats, setup.warmup, setup.rounds = 0.3, 1, 0, 1
        setup.timer = simulated_seconds
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
