"""Smoke test of ``benchmarks/accuracy_study.py`` on CPU, without training.

The study's real runs need a GPU (its ``--quick`` takes minutes on CPU).
Here its plan is checked as ``--plan_only`` lists it, and the whole
driver (scheduler, subprocesses, table, plot) runs with a stand-in for the
recipe's ``train.py`` that writes what a finished run leaves (a ``save``
folder and a ``wer_test.txt``) and fixed costs for the architectures. The
architectures themselves are rebuilt from logged widths and timed, tiny.
"""

import csv
import importlib.util
import json
import os
import sys

import pytest

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "benchmarks",
    "accuracy_study.py",
)
#: Two seeds (the seed spread), two criteria, one of them trained from
#: scratch, 2 dense epochs and 1 of fine-tuning.
ARGS = ["--seeds", "2", "--epochs", "2", "--finetune", "1"]
ARGS += ["--criteria", "taylor", "random", "--targets", "0.5"]
ARGS += ["--scratch", "taylor"]
#: Stands in for the recipe's train.py: a finished run's files, a test
#: PER that depends on the run's name and seed.
FAKE_TRAIN = """\
import os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
out = args["output_folder"]
os.makedirs(os.path.join(out, "save"), exist_ok=True)
edits = sum(map(ord, os.path.basename(out))) % 7 + int(args["seed"])
with open(os.path.join(out, "wer_test.txt"), "w") as f:
    f.write("PER stats:\\n")
    f.write(f"u1, %WER 0 [ {edits} / 40, 0 ins, 0 del, 0 sub ]\\n")
    f.write("u2, %WER 0 [ 2 / 40, 0 ins, 0 del, 0 sub ]\\n")
"""


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("accuracy_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_has_dense_pruned_and_scratch_runs(study, tmp_path):
    assert study.main(ARGS + ["--plan_only", "--work", str(tmp_path)]) == 0
    with open(tmp_path / "plan.json") as f:
        plan = {r["name"]: r for r in json.load(f)}
    assert not (tmp_path / "runs").exists()  # nothing trained
    pruned = ["taylor50", "random50"]
    names = [f"dense_s{s}" for s in (1, 2)]
    for s in (1, 2):
        names += [f"dense_ft_s{s}"] + [f"{p}_s{s}" for p in pruned]
    names += [f"scratch_taylor50_s{s}" for s in (1, 2)]
    assert list(plan) == names
    for s in (1, 2):
        dense, ft = plan[f"dense_s{s}"], plan[f"dense_ft_s{s}"]
        assert dense["kind"] == "dense" and dense["seed"] == s
        assert (dense["epochs"], dense["new_epochs"]) == (2, 2)
        assert ft["kind"] == "dense_ft" and ft["seed"] == s
        assert (ft["epochs"], ft["new_epochs"]) == (3, 1)
        assert ft["source"] == f"dense_s{s}"
        for p in pruned:
            run = plan[f"{p}_s{s}"]
            assert run["kind"] == "pruned" and run["source"] == f"dense_s{s}"
            assert run["yaml"] == "train_pruned_params.yaml"
            assert (run["epochs"], run["new_epochs"]) == (3, 1)
            assert run["prune_start_epoch"] == 3 and run["prune_target"] == 0.5
        scratch = plan[f"scratch_taylor50_s{s}"]
        assert scratch["kind"] == "scratch"
        assert scratch["source"] == f"taylor50_s{s}"
        assert (scratch["epochs"], scratch["new_epochs"]) == (3, 3)
    # The study's YAML files: parameters as the pruning measure, a plan
    # replayed on freshly built modules.
    yamls = tmp_path / "yaml"
    pruned_yaml = (yamls / "train_pruned_params.yaml").read_text()
    assert "target_type: !ref <prune_measure>" in pruned_yaml
    assert "scratch_plan:" in (yamls / "train_scratch.yaml").read_text()


class FakePlan:
    """What ``final_plan`` returns once a pruned run has pruned."""

    def __len__(self):
        return 1

    def save(self, path):
        with open(path, "w") as f:
            f.write("groups: {}\n")


def fake_costs(runs, *args, **kwargs):
    """Costs of each pruned architecture (halved) and the dense one."""
    costs = {
        "dense": {
            "params": 1000,
            "macs": 2e6,
            "latency_ms": 10.0,
            "latency_ratio": 1.0,
        }
    }
    for r in runs.values():
        if r.kind == "pruned" and r.status == "done":
            costs[r.name] = {
                "params": 500,
                "macs": 1e6,
                "latency_ms": 6.0,
                "latency_ratio": 0.6,
            }
    return costs


def test_runs_are_scheduled_and_reported(study, tmp_path, monkeypatch):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)

    def command(run):
        over = [f"--{k}={v}" for k, v in run.overrides.items()]
        return [sys.executable, str(fake)] + over

    monkeypatch.setattr(study.Run, "command", command)
    monkeypatch.setattr(study, "final_plan", lambda folder: FakePlan())
    monkeypatch.setattr(study, "measure_models", fake_costs)
    results = tmp_path / "results"
    argv = ARGS + ["--work", str(tmp_path / "work")]
    assert study.main(argv + ["--results", str(results), "--tag", "t"]) == 0

    with open(results / "accuracy_t_runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10  # every run finished
    epochs = {(r["config"], r["seed"]): int(r["epochs"]) for r in rows}
    assert epochs[("dense", "1")] == 2 and epochs[("dense_ft", "2")] == 3
    assert epochs[("taylor50", "1")] == epochs[("scratch_taylor50", "2")] == 3
    for r in rows:
        # The scratch run trains its pruned run's architecture.
        pruned = r["kind"] in ("pruned", "scratch")
        assert float(r["param_ratio"]) == (0.5 if pruned else 1.0)
    table = (results / "accuracy_t.md").read_text()
    configs = ["dense", "dense_ft", "taylor50", "random50", "scratch_taylor50"]
    for c in configs:
        assert f"| {c} | " in table
    assert "| taylor50 | scratch_taylor50 |" in table  # paired by seed
    with open(results / "accuracy_t.csv") as f:
        summary = {r["config"]: r for r in csv.DictReader(f)}
    assert list(summary) == configs
    assert summary["taylor50"]["seeds"] == "2"
    assert summary["taylor50"]["verdict"] in ("within noise", "worse", "better")
    assert (results / "accuracy_t.png").stat().st_size > 0


def test_architectures_rebuilt_from_logged_widths(study, tmp_path):
    log = tmp_path / "train_log.txt"
    log.write_text(
        "Pruning stage 1/1 at epoch 2 (TaylorScorer)\n"
        "| group | kept / total |\n|---|---:|\n"
        "| model.RNN.layer0 | 8 / 16 |\n"
        "MACs 9 -> 5 (55.6% of unpruned); params 1,000 -> 700 (70.0%)\n"
    )
    widths, _ = study.stage_widths(str(log))
    model = {k: v for k, v in study.QUICK.items() if k != "batch_size"}
    spec = {
        "overrides": model,
        "models": {"dense": None, "taylor50_s1": widths},
        "threads": 1,
        "seconds": 0.2,
        "repeats": 1,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    study.time_worker(str(tmp_path / "spec.json"), str(tmp_path / "out.json"))
    with open(tmp_path / "out.json") as f:
        costs = json.load(f)
    dense, pruned = costs["dense"], costs["taylor50_s1"]
    assert pruned["params"] < dense["params"]
    assert pruned["macs"] < dense["macs"]
    assert dense["latency_ratio"] == 1.0 and pruned["latency_ratio"] > 0
    # Layer 0 of the RNN keeps 8 of its 16 units.
    rnn_u = [k for k in pruned["shapes"] if k.endswith("rnn.0.u.weight")]
    assert [pruned["shapes"][k] for k in rnn_u] == [[16, 8]]
