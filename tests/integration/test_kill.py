"""SIGKILL a pruning run at 20 moments (training steps, the stage, checkpoint
writes and deletions), restart it: every restart ends with the plan and the
bit-identical weights of a run that was never interrupted.

``kill_driver.py`` does the work in one subprocess (imports once, forks a
child per run); see its docstring for the timeline and the kill points.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

N_KILLS = 20


@pytest.mark.skipif(
    not hasattr(os, "fork"), reason="the kill driver forks (POSIX only)"
)
def test_every_restart_after_a_sigkill_equals_the_uninterrupted_run(
    tmp_path,
):
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(
            [ROOT, os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep),
    )
    res = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "kill_driver.py"),
            str(tmp_path),
            str(N_KILLS),
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    with open(tmp_path / "report.json") as f:
        report = json.load(f)
    runs = report["runs"]
    assert len(runs) == N_KILLS
    kinds = {r["kind"] for r in runs}
    assert {
        "step",
        "stage",
        "scoring",
        "surgery",
        "file",
        "half a file",
        "CKPT.yaml",
        "completion record",
        "deletion",
    } <= kinds
    for r in runs:
        assert r["first"] == "killed", r
        assert r["restart"] == "ok", (r, res.stderr[-4000:])
        assert r["same"], r
    # Kills inside a checkpoint write left folders that look like
    # checkpoints; the restart skipped them and kept them.
    interrupted = [
        r for r in runs if r["kind"] in ("file", "half a file", "CKPT.yaml")
    ]
    assert interrupted and "Skipping checkpoint" in res.stderr
