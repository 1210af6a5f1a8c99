"""A latency stage's missed try teaches the next one: the curves of the
groups it cut are scaled by what it really saved, the others kept, so the
next try turns to the groups whose curves were right."""

import copy

import torch
from conftest import build_crdnn

from speechbrain_prune.costs.latency import build_latency_table
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.graph.depth import DepthCandidate
from speechbrain_prune.selection import Selector
from speechbrain_prune.selection.joint import PruningChoice
from speechbrain_prune.surgery import apply_removals
from speechbrain_prune.training.latency_stage import _learned

UNITS = 32
CNN = 28  # conv channels of the model below
X = torch.rand(2, 12, 20)


def cnn_channels(model):
    return sum(
        m.out_channels
        for m in model.CNN.modules()
        if isinstance(m, torch.nn.Conv2d)
    )


def device_seconds(model, run=None, repeats=1, warmup=0):
    """The device: only the RNN's width costs time."""
    return 0.2 + model.RNN.rnn.hidden_size / UNITS


def table_seconds(model, run=None, repeats=1, warmup=0):
    """A noisy table: narrowing the CNN looked fast while it was measured
    (up to 0.8 s of the 1.2 s), though it saves nothing."""
    return device_seconds(model) - 0.8 * (1 - cnn_channels(model) / CNN)


def select(model, groups, table, target):
    # The RNN's units score high: the selection prefers the CNN's channels
    # while their curves promise as much.
    scores = {
        g.id: torch.arange(g.size, dtype=torch.float)
        + (100.0 if g.id.startswith("RNN") else 0.0)
        for g in groups.prunable()
    }
    selector = Selector(
        target=target, target_type="latency", latency_table=table
    )
    removals = selector.select(model, groups, scores)
    pruned = copy.deepcopy(model)
    apply_removals(pruned, copy.deepcopy(groups), removals)
    return removals, device_seconds(pruned) / device_seconds(model)


def test_a_missed_try_turns_the_next_to_the_groups_it_left_whole():
    model = build_crdnn(rnn="lstm", rnn_layers=1, rnn_neurons=UNITS)
    groups = discover_groups(model, X)
    table = build_latency_table(
        model, groups, X, rounds=1, depth=False, measure=table_seconds
    )
    target = 0.3
    goal = 1.0 - target
    first, measured = select(model, groups, table, target)
    # The table sent the first try to the CNN, which costs nothing here.
    assert "RNN.layer0" not in first and measured > goal
    choice = PruningChoice([], groups, first)
    learned = _learned(table, choice, 1.0, measured, goal)
    for gid, entry in table["groups"].items():
        if gid in first:
            assert learned["groups"][gid] != entry
        else:
            assert learned["groups"][gid] == entry
    second, measured = select(model, groups, learned, target)
    # The RNN's curve was right and is kept: the second try cuts it and
    # meets the goal on the device.
    assert len(second.get("RNN.layer0", [])) > 0
    assert measured <= goal + 0.05


def test_a_try_that_removed_a_layer_scales_every_curve():
    """Its groups' ids are the renumbered model's (RNN.layer1 may be the
    old layer 2), so no curve is known to be right."""
    table = {
        "base_seconds": 1.0,
        "depth": {"RNN:1": 0.8},
        "groups": {
            "RNN.layer1": {"widths": [2, 4], "seconds": [0.7, 1.0]},
            "CNN.conv": {"widths": [2, 4], "seconds": [0.7, 1.0]},
        },
    }
    removed_layer = PruningChoice(
        [DepthCandidate("rnn_layer", "RNN", 1)], None, {"RNN.layer1": [0]}
    )
    learned = _learned(table, removed_layer, 1.0, 0.75, 0.5)
    for gid, entry in table["groups"].items():
        assert learned["groups"][gid]["seconds"][0] > entry["seconds"][0]
