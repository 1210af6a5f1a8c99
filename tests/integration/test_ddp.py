"""Pruning under DDP: 2 CPU processes (gloo, torchrun) take the same
decision, end with identical shapes and weights, and resume after a stop."""

import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    """A TCP port nobody listens on now (port 0 hangs torchrun's store)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out, data, epochs, *extra):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        os.path.join(HERE, "ddp_run.py"),
        str(out),
        str(data),
        str(epochs),
        *extra,
    ]
    # This checkout's package, not whichever one is installed.
    root = os.path.dirname(os.path.dirname(HERE))
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([HERE, root]),
    )
    res = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=out.parent,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    ranks = [
        torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)
    ]
    return ranks


def assert_ranks_agree(r0, r1):
    assert r0["plan"] == r1["plan"]
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k


@pytest.mark.skipif(
    not torch.distributed.is_gloo_available(),
    reason="torch.distributed has no gloo backend here",
)
def test_ddp_ranks_prune_identically_and_resume(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    out.mkdir()
    r0, r1 = torchrun(out, data, epochs=3)
    assert_ranks_agree(r0, r1)
    assert len(r0["plan"]["steps"]) == 1
    assert r0["epoch"] == 3  # training went on after the stage
    assert r0["wrapped"] == ["model", "output"]  # re-wrapped in DDP
    # Stop after the stage, start again for one more epoch: resumes from
    # the pruned checkpoint on both ranks.
    for r in (0, 1):
        os.remove(out / f"rank{r}.pt")
    r0b, r1b = torchrun(out, data, epochs=4)
    assert_ranks_agree(r0b, r1b)
    assert r0b["epoch"] == 4
    assert r0b["plan"] == r0["plan"]
    for k, v in r0["state"].items():
        assert r0b["state"][k].shape == v.shape, k
    shutil.rmtree(out / "save")


@pytest.mark.skipif(
    not torch.distributed.is_gloo_available(),
    reason="torch.distributed has no gloo backend here",
)
def test_ddp_latency_stage_ranks_agree(tmp_path):
    """A latency stage under DDP: the main process times, every rank
    selects in step (the selection averages scores and losses over the
    ranks: run on the main process alone it waited for the others
    forever), and the ranks end with the same pruned model."""
    out, data = tmp_path / "out", tmp_path / "data"
    out.mkdir()
    r0, r1 = torchrun(out, data, 3, "gloo", "cpu", "latency")
    assert_ranks_agree(r0, r1)
    assert len(r0["plan"]["steps"]) == 1
    assert r0["epoch"] == 3
