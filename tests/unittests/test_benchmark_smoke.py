"""Smoke test of ``benchmarks/prune_latency.py`` on a tiny CRDNN (CPU).

Real time is noise on a shared CPU, so the "device" here is deterministic:
a forward pass takes 1 ns per MAC. The library's timers are replaced where
the benchmark and the latency stage look them up; everything else (groups,
table, selection, end-to-end correction, surgery, outputs) is real.
"""

import csv
import functools
import importlib.util
import os

import pytest

import speechbrain_prune.training.latency_stage as latency_stage
from speechbrain_prune.costs import count_macs

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "benchmarks",
    "prune_latency.py",
)
GOAL = 0.05  # issue 11: measured ratio within 0.05 of the requested one


def mac_seconds(model, run, *args, **kwargs):
    return 1e-9 * count_macs(model, run=run)


def mac_ratio(reference, model, run, *args, **kwargs):
    return mac_seconds(model, run) / mac_seconds(reference, run)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("prune_latency", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path_factory.mktemp("bench")
    mp = pytest.MonkeyPatch()
    mp.setattr(
        bench,
        "build_latency_table",
        functools.partial(bench.build_latency_table, measure=mac_seconds),
    )
    mp.setattr(bench, "latency_ratio", mac_ratio)
    mp.setattr(latency_stage, "latency_ratio", mac_ratio)
    argv = ["--quick", "--models", "timit_ctc", "--targets", "0.5"]
    argv += ["--frames", "40", "--probe-frames", "40", "--count-frames"]
    try:
        rows = bench.main(argv + ["40", "--out", str(out)])
    finally:
        mp.undo()
    return bench, rows, out


def test_quick_run_writes_table_csv_and_plot(quick_run):
    _, rows, out = quick_run
    stem = out / "prune_latency_cpu_quick"
    for ext in (".md", ".csv", ".png"):
        assert (out / (stem.name + ext)).stat().st_size > 0
    table = (out / (stem.name + ".md")).read_text()
    assert "| 0.50 | depth |" in table and "| 0.50 | width |" in table
    with open(out / (stem.name + ".csv")) as f:
        assert len(list(csv.DictReader(f))) == len(rows) == 3


def test_latency_targets_met_on_a_deterministic_device(quick_run):
    _, rows, _ = quick_run
    dense, *pruned = rows
    assert dense["variant"] == "unpruned" and dense["measured_ratio"] == 1.0
    assert [(r["target"], r["variant"]) for r in pruned] == [
        (0.5, "width"),
        (0.5, "depth"),
    ]
    for r in pruned:
        # Time is proportional to MACs here: the stage's check, the final
        # side-by-side ratio and the MAC ratio agree, and the end-to-end
        # corrections bring the model to its target.
        assert r["measured_ratio"] == pytest.approx(r["mac_ratio"], abs=1e-6)
        assert r["measured_ratio"] == pytest.approx(r["check_ratio"])
        assert abs(r["measured_ratio"] - r["target"]) <= GOAL
        assert r["params"] < dense["params"]
        assert r["removed"] != "nothing"


def test_replot_merges_csvs(quick_run, tmp_path):
    bench, rows, out = quick_run
    csv_path = str(out / "prune_latency_cpu_quick.csv")
    merged = bench.main(
        ["--replot", csv_path, csv_path, "--out", str(tmp_path)]
    )
    assert len(merged) == 2 * len(rows)
    assert (tmp_path / "prune_latency_merged.png").stat().st_size > 0
