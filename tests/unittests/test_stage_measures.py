"""Stages of one run counting different measures (parameters, then latency
on a simulated device): each meets its own target, a resumed run ends as
an uninterrupted one, bad schedules fail before training (tiny recipe)."""

import json
import logging

import pytest
import torch
from tiny_recipe import build, final_state, fit

from speechbrain_prune.costs import count_params
from speechbrain_prune.selection import SelectionError

MIXED = """pruner: !new:speechbrain_prune.Pruner
    scorer: !apply:speechbrain_prune.scorers.get_scorer
        name_or_instance: taylor
        n_batches: 2
        progress: False
    stages:
        - epoch: 2
          target: 0.3
          target_type: params
        - epoch: 3
          target: !ref <prune_target>
          target_type: latency
    selection:
        target_type: macs
        min_keep_fraction: 0.2
    latency: !new:speechbrain_prune.LatencySetup
        seconds: 1.0
        repeats: 1
        warmup: 0
        rounds: 1
"""


def simulated_seconds(root, run, repeats, warmup):
    """A deterministic device: the RNN's units dominate, every parameter
    adds a little (so parameters and latency are different measures)."""
    rnn = root["model"].RNN.rnn
    return 1e-3 * rnn.hidden_size * rnn.num_layers + 1e-7 * count_params(root)


def build_mixed(folder, latency_target=0.4, epochs=3, **opts):
    overrides = {"number_of_epochs": epochs, "prune_target": latency_target}
    brain, hparams, data = build(folder, overrides, pruner=MIXED, **opts)
    hparams["pruner"].latency.timer = simulated_seconds
    return brain, hparams, data


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    brain, hparams, data = build_mixed(folder, ckpt_interval_steps=1)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("speechbrain_prune.training.pruner")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        fit(brain, hparams, data)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    text = "\n".join(r.getMessage() for r in records)
    return folder, final_state(brain), hparams["pruner"], text


def test_each_stage_meets_its_own_measure(uninterrupted):
    folder, _, pruner, _ = uninterrupted
    first, second = pruner.history
    assert (first["measure"], second["measure"]) == ("params", "latency")
    assert first["params_after"] <= 0.7 * first["base_params"]
    # The params stage alone leaves the latency target unmet: the latency
    # stage had work to do, in its own measure.
    assert second["latency"]["before"] > 0.6
    # Met end to end, within the check's tolerance (LatencyStage).
    assert second["latency"]["after"] <= 0.6 + 0.02
    assert second["params_after"] < second["params_before"]
    # The simulated device agrees with the record, end to end.
    dense = pruner._dense
    live = pruner.brain.modules
    ratio = simulated_seconds(live, None, 1, 0) / simulated_seconds(
        dense, None, 1, 0
    )
    assert ratio == pytest.approx(second["latency"]["after"])
    # The unpruned model's table was measured before training (stage 1
    # counts parameters), the latency stage's own table at its start.
    names = sorted(p.name for p in folder.glob("latency_*.json"))
    assert names == [
        "latency_cpu-2threads-b1-1s-float32-f0.75_0.5_0.25_dense.json",
        "latency_cpu-2threads-b1-1s-float32-f0.75_0.5_0.25_stage2.json",
    ]
    dense_table = json.loads((folder / names[0]).read_text())
    assert dense_table["current_ratio"] == 1.0


def test_the_train_log_names_each_stage_measure(uninterrupted):
    log = uninterrupted[3]
    assert "target 30% fewer parameters than unpruned" in log
    assert "target 40% fewer latency than unpruned" in log


class Killed(Exception):
    """Stands for the process being killed."""


def kill_between_stages(brain, hparams):
    """Killed at the second step of epoch 2 (after stage 1)."""
    calls = {"n": 0}
    original = brain.fit_batch

    def fit_batch(batch):
        calls["n"] += 1
        if calls["n"] == 3 + 2:
            raise Killed("mid-epoch")
        return original(batch)

    brain.fit_batch = fit_batch


def kill_in_the_latency_stage(brain, hparams):
    """Killed while the latency stage scores (its table already cached)."""
    scorer = hparams["pruner"].scorer
    original = scorer.score
    calls = {"n": 0}

    def score(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed("scoring stage 2")
        return original(*args, **kwargs)

    scorer.score = score


@pytest.mark.parametrize(
    "kill", [kill_between_stages, kill_in_the_latency_stage]
)
def test_resume_mid_schedule_equals_uninterrupted(
    uninterrupted, tmp_path, kill
):
    _, reference, done, _ = uninterrupted
    brain, hparams, data = build_mixed(tmp_path, ckpt_interval_steps=1)
    kill(brain, hparams)
    with pytest.raises(Killed):
        fit(brain, hparams, data)
    assert len(hparams["pruner"].history) == 1
    # A new process: everything built again from the YAML.
    brain, hparams, data = build_mixed(tmp_path, ckpt_interval_steps=1)
    fit(brain, hparams, data)
    pruner = hparams["pruner"]
    assert [r["measure"] for r in pruner.history] == ["params", "latency"]
    assert pruner.plan.to_dict() == done.plan.to_dict()
    # Latency was timed against the unpruned architecture (from the YAML,
    # before the checkpoint's plan resized the model), not the resumed one.
    assert pruner._dense["model"].RNN.rnn.hidden_size == 8
    assert brain.modules["model"].RNN.rnn.hidden_size < 8
    state = final_state(brain)
    assert state.keys() == reference.keys()
    for k in reference:
        assert torch.equal(state[k], reference[k]), k


def test_raised_latency_target_on_resume_prunes_the_rest(
    uninterrupted, tmp_path, caplog
):
    import shutil

    folder, _, done, _ = uninterrupted
    shutil.copytree(folder, tmp_path / "run")
    brain, hparams, data = build_mixed(
        tmp_path / "run", latency_target=0.5, epochs=4
    )
    with caplog.at_level(logging.WARNING):
        fit(brain, hparams, data)
    assert "Pruning stage 2 was done to 40% fewer latency" in caplog.text
    pruner = hparams["pruner"]
    assert len(pruner.plan) > len(done.plan)
    assert pruner.history[-1]["measure"] == "latency"
    assert pruner.history[-1]["latency"]["after"] <= 0.5 + 0.02
    # The parameters stage stays done.
    assert [r["stage"] for r in pruner.history].count(0) == 1


def test_lowered_latency_target_on_resume_is_refused(uninterrupted, tmp_path):
    import shutil

    folder = uninterrupted[0]
    shutil.copytree(folder, tmp_path / "run")
    brain, hparams, data = build_mixed(tmp_path / "run", latency_target=0.2)
    with pytest.raises(ValueError, match="40% fewer latency.*cannot come"):
        fit(brain, hparams, data)


def test_an_unreachable_stage_fails_before_training(tmp_path):
    """The latency stage asks more than the constraints allow (every
    layer keeps 20 %, the RNN's units dominate the simulated latency):
    refused before the first training step, naming the stage."""
    brain, hparams, data = build_mixed(tmp_path, latency_target=0.95)
    steps = {"n": 0}
    original = brain.fit_batch

    def fit_batch(batch):
        steps["n"] += 1
        return original(batch)

    brain.fit_batch = fit_batch
    with pytest.raises(SelectionError, match=r"stage 2 \(latency\)"):
        fit(brain, hparams, data)
    assert steps["n"] == 0


def test_round_to_table_in_a_latency_stage(tmp_path):
    """``round_to: table``: the latency stage keeps only widths its table
    measured; the parameters stage before it keeps any width."""
    text = MIXED.replace(
        "min_keep_fraction: 0.2",
        "min_keep_fraction: 0.2\n        round_to: table",
    )
    overrides = {"number_of_epochs": 3, "prune_target": 0.4}
    brain, hparams, data = build(tmp_path, overrides, pruner=text)
    pruner = hparams["pruner"]
    assert pruner.selection["round_to"] == "table"
    pruner.latency.timer = simulated_seconds
    fit(brain, hparams, data)
    first, second = pruner.history
    assert first["params_after"] <= 0.7 * first["base_params"]
    assert second["latency"]["after"] <= 0.6 + 0.02
    cache = json.loads(
        (
            tmp_path
            / "latency_cpu-2threads-b1-1s-float32-f0.75_0.5_0.25_stage2.json"
        ).read_text()
    )
    table = cache["table"]["groups"]
    changed = 0
    for gid, kept, total in second["groups"]:
        if kept < total:
            changed += 1
            assert kept in table[gid]["widths"], (gid, kept)
    assert changed


def test_a_stage_counting_another_measure_on_resume_runs_again(
    uninterrupted, tmp_path, caplog
):
    """Stage 2 was done to 40 % less latency; the YAML now has it count
    MACs: it runs again, in MACs, at the next epoch start."""
    import shutil

    folder, _, done, _ = uninterrupted
    shutil.copytree(folder, tmp_path / "run")
    text = MIXED.replace("target_type: latency", "target_type: macs")
    overrides = {"number_of_epochs": 4, "prune_target": 0.6}
    brain, hparams, data = build(tmp_path / "run", overrides, pruner=text)
    with caplog.at_level(logging.WARNING):
        fit(brain, hparams, data)
    assert "was done counting latency" in caplog.text
    assert "now has it count MACs" in caplog.text
    pruner = hparams["pruner"]
    last = pruner.history[-1]
    assert (last["stage"], last["epoch"], last["measure"]) == (1, 4, "macs")
    assert last["macs_after"] <= 0.4 * last["base_macs"]
    assert [r["stage"] for r in pruner.history].count(0) == 1


def test_a_latency_stage_run_again_times_the_model_it_prunes(
    uninterrupted, tmp_path
):
    """A raised latency target runs stage 2 again on the model it already
    pruned: it must time and select on that model, not reuse the first
    run's cache (its ratio, table and fraction were of the model before
    the stage), or the target is met by accident or missed silently."""
    import shutil

    folder, _, done, _ = uninterrupted
    shutil.copytree(folder, tmp_path / "run")
    brain, hparams, data = build_mixed(
        tmp_path / "run", latency_target=0.7, epochs=4
    )
    fit(brain, hparams, data)
    pruner = hparams["pruner"]
    first, again = pruner.history[-2:]
    assert (first["stage"], again["stage"]) == (1, 1)
    # Timed on the model the first run left.
    assert again["latency"]["before"] == pytest.approx(
        first["latency"]["after"]
    )
    # What the record says is what the model runs at, and it meets 70 %.
    live = pruner.brain.modules
    ratio = simulated_seconds(live, None, 1, 0) / simulated_seconds(
        pruner._dense, None, 1, 0
    )
    assert again["latency"]["after"] == pytest.approx(ratio)
    assert ratio <= 0.3 + 0.02


def test_a_cached_decision_is_kept_only_for_its_own_target():
    """Killed after the choice was cached, before the surgery, then
    resumed with another target: the same model is measured (the table
    is reused) but the choice is made again for the new target."""
    from speechbrain_prune.costs.setup import LatencySetup
    from speechbrain_prune.selection.joint import PruningChoice
    from speechbrain_prune.training.latency_stage import LatencyStage

    setup = LatencySetup(repeats=1, warmup=0, rounds=1, timer=lambda *a: 1.0)
    stage = LatencyStage(setup, torch.nn.Linear(2, 2))
    asked = []

    def select(fraction, table):
        asked.append(round(fraction, 6))
        return PruningChoice()

    net = torch.nn.Linear(2, 2)
    table = {"base_seconds": 1.0, "groups": {}, "depth": {}}
    stage.save(0, {"current_ratio": 1.0, "table": table, "fraction": 0.3})
    stage.choose(0, net, {}, None, select, 0.3)  # an older cache: kept
    assert asked == [0.3]
    stage.choose(0, net, {}, None, select, 0.5)
    assert asked[-1] == 0.5
    assert stage.load(0)["target"] == 0.5


def test_attached_again_the_pruner_keeps_the_unpruned_reference(tmp_path):
    """Detached after the parameters stage and attached again ("attach
    again to go on"), the pruner must still time latency against the
    unpruned architecture, not the model the parameters stage left."""
    brain, hparams, data = build_mixed(tmp_path)
    pruner = hparams["pruner"]
    assert pruner._dense["model"].RNN.rnn.hidden_size == 8
    # The parameters stage done: a stage in the history, a narrower RNN
    # (its width is all the simulated device looks at).
    pruner.done.append(0)
    brain.modules["model"].RNN.rnn.hidden_size = 5
    pruner.detach()
    pruner.attach(brain)
    assert pruner._dense["model"].RNN.rnn.hidden_size == 8


def test_a_selector_from_yaml_keeps_the_cost_it_was_given():
    """``selection: !new:...Selector``: a ``cost`` the YAML left out is
    derived (each stage ranks by its own measure), one it names holds for
    every stage, also when it equals the selector's own target_type."""
    from speechbrain_prune import LatencySetup, Pruner
    from speechbrain_prune.selection import Selector

    stages = [
        {"epoch": 2, "target": 0.3, "target_type": "params"},
        {"epoch": 3, "target": 0.4, "target_type": "latency"},
    ]

    def pruner(selector):
        return Pruner(
            "magnitude",
            stages=stages,
            selection=selector,
            latency=LatencySetup(),
        )

    derived = pruner(Selector(target_type="params"))
    assert "cost" not in derived.selection
    assert (
        derived._selector(
            0.4, {"base_seconds": 1.0, "groups": {}}, "latency"
        ).cost
        == "latency"
    )
    named = pruner(Selector(target_type="params", cost="params"))
    assert named.selection["cost"] == "params"
    assert (
        named._selector(
            0.4, {"base_seconds": 1.0, "groups": {}}, "latency"
        ).cost
        == "params"
    )


def test_round_to_table_from_a_yaml_selector(tmp_path):
    """``selection: !new:...Selector`` with ``round_to: table`` in a run
    whose latency stage follows a parameters stage: the selector is a
    template (no table of its own), the latency stage keeps measured
    widths as with the dict form."""
    text = MIXED.replace(
        """    selection:
        target_type: macs
        min_keep_fraction: 0.2
""",
        """    selection: !new:speechbrain_prune.selection.Selector
        target_type: macs
        min_keep_fraction: 0.2
        round_to: table
""",
    )
    overrides = {"number_of_epochs": 3, "prune_target": 0.4}
    brain, hparams, data = build(tmp_path, overrides, pruner=text)
    pruner = hparams["pruner"]
    assert pruner.selection["round_to"] == "table"
    pruner.latency.timer = simulated_seconds
    fit(brain, hparams, data)
    second = pruner.history[-1]
    table = json.loads(
        (
            tmp_path
            / "latency_cpu-2threads-b1-1s-float32-f0.75_0.5_0.25_stage2.json"
        ).read_text()
    )["table"]["groups"]
    for gid, kept, total in second["groups"]:
        assert kept == total or kept in table[gid]["widths"], (gid, kept)


def test_the_check_before_training_times_only_the_narrowest_widths(
    uninterrupted,
):
    """Stage 1 counts parameters, so the latency stage's own table is
    measured later, on the model stage 1 pruned: the dense model's table
    serves only the check that the target can be reached, and holds only
    the narrowest width each group may keep (and the layers' removals)."""
    folder, _, _, _ = uninterrupted
    key = "latency_cpu-2threads-b1-1s-float32-f0.75_0.5_0.25"
    dense = json.loads((folder / f"{key}_dense.json").read_text())["table"]
    for gid, entry in dense["groups"].items():
        assert len(entry["widths"]) == 2, (gid, entry["widths"])
    stage = json.loads((folder / f"{key}_stage2.json").read_text())["table"]
    assert any(len(e["widths"]) > 2 for e in stage["groups"].values())
