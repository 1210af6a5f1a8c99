"""Smoke test of ``benchmarks/prune_latency.py`` on tiny CRDNNs (CPU)."""

import csv
import importlib.util
import os

import pytest

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "benchmarks",
    "prune_latency.py",
)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("prune_latency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_table_and_hits_mac_targets(bench, tmp_path):
    argv = ["--quick", "--device", "cpu", "--out", str(tmp_path)]
    rows = bench.main(argv + ["--repeats", "2", "--warmup", "0"])
    stem = tmp_path / "prune_latency_cpu_quick"
    for ext in (".md", ".csv", ".png"):
        assert (stem.parent / (stem.name + ext)).stat().st_size > 0
    table = (stem.parent / (stem.name + ".md")).read_text()
    assert "| width x0.50 |" in table and "| 2 RNN layers |" in table
    with open(stem.parent / (stem.name + ".csv")) as f:
        assert len(list(csv.DictReader(f))) == len(rows) == 10
    for row in rows:
        assert row["latency_ms"] > 0 and row["runs"] == 2
        if row["variant"].startswith("width"):
            target = float(row["variant"].split("x")[1])
            assert abs(row["mac_ratio"] / target - 1) <= 0.02
            # MACs are linear in time: the short count gives the same ratio.
            assert abs(row["mac_ratio"] - row["mac_ratio_count"]) < 1e-3
        elif row["variant"] == "unpruned":
            assert row["mac_ratio"] == 1.0 and row["latency_ratio"] == 1.0
        else:
            assert row["mac_ratio"] < 1.0 and row["params_ratio"] < 1.0
