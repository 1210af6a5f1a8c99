"""Latency that jumps with width (cuDNN's RNN kernel switch): a table
measured on both sides of the step and ``round_to: table`` land on the
fast side, where a line interpolated across the step misleads."""

import copy
import os

import pytest
import torch
from conftest import build_crdnn

from speechbrain_prune.costs.latency import build_latency_table, table_widths
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.selection import SelectionError, Selector
from speechbrain_prune.surgery import apply_removals

#: RNNs of this many units or fewer run twice as fast per unit.
STEP = 12
UNITS = 32
X = torch.rand(2, 12, 20)


def step_seconds(model, run=None, repeats=1, warmup=0):
    """A simulated device: only the RNN's width counts, with a step."""
    h = model.RNN.rnn.hidden_size
    return 1.0 + h * (0.5 if h <= STEP else 1.0) / UNITS


def simulated_table(model, groups, measure=step_seconds, steps=()):
    """A latency table without depth entries, timed by ``measure``."""
    return build_latency_table(
        model,
        groups,
        X,
        rounds=1,
        depth=False,
        measure=measure,
        steps=steps,
    )


def scored_model():
    model = build_crdnn(rnn="lstm", rnn_layers=1, rnn_neurons=UNITS)
    groups = discover_groups(model, X)
    scores = {
        g.id: torch.arange(g.size, dtype=torch.float) for g in groups.prunable()
    }
    return model, groups, scores


def select_and_time(model, groups, scores, steps, round_to, target):
    table = simulated_table(model, groups, steps=steps)
    selector = Selector(
        target=target,
        target_type="latency",
        latency_table=table,
        round_to=round_to,
    )
    removed = selector.select(model, groups, scores)
    pruned = copy.deepcopy(model)
    apply_removals(pruned, copy.deepcopy(groups), removed)
    ratio = step_seconds(pruned) / step_seconds(model)
    return pruned.RNN.rnn.hidden_size, ratio, selector, table


def test_the_table_measures_both_sides_of_a_step():
    assert table_widths(UNITS, steps=(STEP,)) == [8, 12, 13, 16, 24]
    # Large groups: multiples of 8 (odd widths run slower), the upper side
    # of 192 included: 200, not an odd 193 that may itself be slow.
    assert table_widths(1024, steps=(192,)) == [192, 200, 256, 512, 768]
    assert table_widths(1024, steps=(190,)) == [190, 192, 256, 512, 768]
    assert table_widths(100, steps=(192,)) == [24, 48, 72]


def test_round_to_table_lands_on_the_fast_side():
    """31 % less latency: on the slow side only widths below 11 would do,
    on the fast side 12 does. A line from 8 to 16 units says 13 does."""
    model, groups, scores = scored_model()
    # Interpolating over a table that never measured the step.
    width, ratio, _, _ = select_and_time(model, groups, scores, (), 1, 0.31)
    assert width > STEP and ratio > 0.69  # estimated met, missed in fact
    # The step measured, widths kept to the measured ones.
    width, ratio, selector, table = select_and_time(
        model, groups, scores, (STEP,), "table", 0.31
    )
    assert width <= STEP and ratio <= 0.69
    (rnn,) = [g.id for g in groups.prunable() if g.id.startswith("RNN")]
    assert width in table["groups"][rnn]["widths"]
    # The selection counted measured times, not an estimate across a step.
    assert selector.report["after"] == pytest.approx(
        step_seconds(model) * ratio
    )


def test_round_to_table_keeps_only_measured_widths():
    model, groups, scores = scored_model()
    table = simulated_table(model, groups)
    selector = Selector(
        target=0.1,
        target_type="latency",
        latency_table=table,
        round_to="table",
        min_keep_fraction=0.3,
    )
    cands = selector.candidates(model, groups)
    for gid, counts in cands.items():
        size = groups[gid].size
        measured = [w for w in table["groups"][gid]["widths"] if w < size]
        assert sorted(size - c for c in counts) == [
            w for w in measured if w >= 0.3 * size
        ]
    # Groups the table has no curve for keep their width.
    del table["groups"][next(iter(cands))]
    fewer = Selector(
        target=0.1, target_type="latency", latency_table=table, round_to="table"
    )
    assert len(fewer.candidates(model, groups)) == len(cands) - 1
    # Without a table: a template (a Pruner's stages bring theirs); it
    # refuses to select.
    with pytest.raises(SelectionError, match="round_to"):
        Selector(target_type="macs", round_to="table").candidates(model, groups)
    with pytest.raises(SelectionError, match="round_to"):
        Selector(target_type="macs", round_to="table", latency_table=table)


def test_round_to_table_after_a_layer_goes_keeps_each_layers_widths():
    """Layers of one RNN at different widths (an earlier stage pruned two
    of them): once layer 1 goes, layer 2 is called layer 1, and the widths
    it may keep are those measured for it, not for the layer removed."""
    from speechbrain_prune.costs import count_params
    from speechbrain_prune.graph.depth import DepthCandidate
    from speechbrain_prune.selection.joint import table_without

    model = build_crdnn(rnn="lstm", rnn_layers=3, rnn_neurons=UNITS)
    groups = discover_groups(model, X)
    apply_removals(
        model,
        groups,
        {f"RNN.layer{k}": list(range(UNITS // 2, UNITS)) for k in (0, 1)},
    )
    groups = discover_groups(model, X)
    assert [groups[f"RNN.layer{k}"].size for k in range(3)] == [16, 16, 32]
    table = build_latency_table(
        model,
        groups,
        X,
        rounds=1,
        measure=lambda m, run, r, w: 1e-6 * count_params(m),
    )
    cand = DepthCandidate("rnn_layer", "RNN", 1)
    cand.apply(model)
    sub = table_without(table, [cand])
    assert sub["groups"]["RNN.layer1"] == table["groups"]["RNN.layer2"]
    assert sub["groups"]["RNN.layer0"] == table["groups"]["RNN.layer0"]
    assert "RNN.layer2" not in sub["groups"]
    groups = discover_groups(model, X)
    selector = Selector(
        target=0.1, target_type="latency", latency_table=sub, round_to="table"
    )
    kept = [32 - c for c in selector.candidates(model, groups)["RNN.layer1"]]
    assert sorted(kept) == table["groups"]["RNN.layer2"]["widths"][:-1]


def test_round_to_table_keeps_a_measured_width_at_the_floor():
    """``min_keep_fraction * size`` a hair above a whole number (0.07 x
    100 is 7.000000000000001 in floats) still lets a group keep that
    width, as ``removal_steps`` does."""
    from types import SimpleNamespace

    from speechbrain_prune.selection.constraints import removal_steps

    table = {
        "base_seconds": 1.0,
        "groups": {"g": {"widths": [7, 50, 100], "seconds": [0.1, 0.5, 1]}},
    }
    selector = Selector(
        target=0.1,
        target_type="latency",
        latency_table=table,
        round_to="table",
        min_keep_fraction=0.07,
    )
    group = SimpleNamespace(id="g", size=100)
    assert 100 - 7 in removal_steps(100, 1, 0.07, 1)
    assert selector._table_steps(group, 1) == [50, 93]


def test_steps_are_measured_for_rnn_layers_only():
    """The step is cuDNN's RNN kernel switch: conv channels and dense
    neurons are not measured there (a stock CRDNN's table would time 6
    more models for nothing, each at an odd width)."""
    model = build_crdnn(
        rnn="lstm", rnn_layers=1, rnn_neurons=UNITS, cnn_channels=[16, 32]
    )
    groups = discover_groups(model, X)
    table = simulated_table(model, groups, steps=(STEP,))
    for g in groups.prunable():
        widths = table["groups"][g.id]["widths"]
        on_step = {STEP, STEP + 1} <= set(widths)
        assert on_step == (g.kind == "rnn"), (g.id, g.kind, widths)


def test_the_default_steps_are_cudnns_only_on_cuda():
    """cuDNN's kernel switch does not exist on the CPU: no step there by
    default (each is two more timed models per RNN layer)."""
    from speechbrain_prune.costs.setup import LatencySetup

    assert LatencySetup().width_steps == ()
    assert LatencySetup(device="cuda").width_steps == (192,)
    assert LatencySetup(width_steps=[100]).width_steps == (100,)
    assert LatencySetup(device="cuda", width_steps=[]).width_steps == ()


def test_a_slow_odd_width_cannot_raise_the_curve_above_it():
    """Curves are made non-decreasing: a probe just above a step at an
    odd width (slow for being odd) would raise every wider width's time.
    The upper side is probed at a multiple of 8 instead."""
    from speechbrain_prune.costs.latency import LatencyModel

    def odd_is_slow(model, run=None, repeats=1, warmup=0):
        h = model.RNN.rnn.hidden_size
        return 1.0 + h / 512 + (1.0 if h % 8 else 0.0)

    model = build_crdnn(rnn="lstm", rnn_layers=1, rnn_neurons=512)
    groups = discover_groups(model, X)
    table = simulated_table(model, groups, odd_is_slow, steps=(192,))
    entry = table["groups"]["RNN.layer0"]
    assert entry["widths"] == [128, 192, 200, 256, 384, 512]
    curve = dict(LatencyModel(table).curves["RNN.layer0"])
    assert curve[256] == pytest.approx(1.0 + 256 / 512)


@pytest.mark.parametrize("rnn", ["ligru", "sligru"])
def test_steps_are_measured_for_torch_rnns_only(rnn):
    """cuDNN's kernel switch is a step of torch's LSTM / GRU / RNN
    (``nn.RNNBase``) only: SpeechBrain's LiGRU has no cuDNN kernel, its
    layers take the fractions only."""
    model = build_crdnn(rnn=rnn, rnn_layers=1, rnn_neurons=UNITS)
    groups = discover_groups(model, X)
    table = simulated_table(
        model,
        groups,
        lambda m, run=None, repeats=1, warmup=0: 1.0,
        steps=(STEP,),
    )
    rnn_groups = [g for g in groups.prunable() if g.kind == "rnn"]
    assert rnn_groups
    for g in rnn_groups:
        assert STEP + 1 not in table["groups"][g.id]["widths"], g.id


def test_the_cache_key_holds_the_tables_widths(tmp_path, caplog):
    """A resumed run with other ``fractions`` or ``width_steps`` measures
    its own table: they are part of the cache's name. A cache of the
    older naming (without them) is not read, and the log says why."""
    import logging

    from speechbrain_prune.costs.setup import LatencySetup
    from speechbrain_prune.training.latency_stage import LatencyStage

    keys = {
        LatencySetup().key,
        LatencySetup(fractions=[0.5]).key,
        LatencySetup(width_steps=[192]).key,
        LatencySetup(width_steps=[96]).key,
    }
    assert len(keys) == 4
    assert (
        LatencySetup(fractions=[0.5, 0.25]).key
        == LatencySetup(fractions=[0.25, 0.5]).key
    )
    setup = LatencySetup()
    stage = LatencyStage(setup, None, str(tmp_path))
    old = tmp_path / "latency_cpu-2threads-b1-10s-float32_stage2.json"
    old.write_text('{"table": {}}')
    assert os.path.basename(stage.path(1)) != old.name
    with caplog.at_level(logging.INFO):
        assert stage.load(1) == {}
    assert old.name in caplog.text
