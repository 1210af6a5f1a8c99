"""Smoke test of ``benchmarks/deploy_latency.py`` on tiny CRDNNs (CPU)."""

import csv
import importlib.util
import os

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "benchmarks",
    "deploy_latency.py",
)


def test_quick_run_writes_table_and_hits_params_target(tmp_path):
    spec = importlib.util.spec_from_file_location("deploy_latency", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--quick", "--rnn", "lstm", "--targets", "0.5", "--seconds", "0.4"]
    argv += ["--repeats", "1", "--warmup", "0", "--no-conv-int8"]
    bench.main(argv + ["--out", str(tmp_path)])
    stem = tmp_path / "deploy_latency_lstm_quick"
    for ext in (".md", ".csv", ".png"):
        assert (stem.parent / (stem.name + ext)).is_file()
    with open(str(stem) + ".csv") as f:
        rows = list(csv.DictReader(f))
    runtimes = ["PyTorch fp32", "PyTorch int8", "ORT fp32", "ORT int8"]
    assert [r["runtime"] for r in rows] == runtimes * 2
    dense, pruned = rows[0], rows[4]
    assert abs(float(pruned["params_ratio"]) - 0.5) < 0.03
    assert int(pruned["params"]) < int(dense["params"])
    by = {(r["model"], r["runtime"]): r for r in rows}
    for model in (dense["model"], pruned["model"]):
        assert float(by[model, "ORT fp32"]["max_abs_err"]) < 1e-4
        int8 = by[model, "ORT int8"]
        fp32 = by[model, "ORT fp32"]
        assert int(int8["size_bytes"]) < int(fp32["size_bytes"])


def test_quick_run_with_a_latency_target_adds_a_smaller_model(tmp_path):
    spec = importlib.util.spec_from_file_location("deploy_latency", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--quick", "--rnn", "gru", "--targets", "--seconds", "0.4"]
    argv += ["--latency-targets", "0.6", "--repeats", "1", "--no-conv-int8"]
    bench.main(argv + ["--tag", "t", "--out", str(tmp_path)])
    with open(tmp_path / "deploy_latency_gru_quick_t.csv") as f:
        rows = list(csv.DictReader(f))
    models = list(dict.fromkeys(r["model"] for r in rows))
    assert models == ["dense", "pruned x0.60 latency"]
    dense, pruned = rows[0], rows[4]
    assert int(pruned["params"]) < int(dense["params"])
    assert float(pruned["params_ratio"]) < 1
    for r in rows:
        if r["runtime"] == "ORT fp32":
            assert float(r["max_abs_err"]) < 1e-4
