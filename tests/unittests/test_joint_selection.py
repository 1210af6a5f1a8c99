"""Width and depth ranked together: the mix with the least loss wins."""

import copy

import pytest
import torch
from conftest import build_crdnn

from speechbrain_prune.costs import count_params
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.plan import PruningPlan
from speechbrain_prune.scorers import TaylorScorer
from speechbrain_prune.selection import Selector
from speechbrain_prune.selection.joint import (
    allowed_depth_candidates,
    choose_depth_and_width,
)
from speechbrain_prune.training import Pruner, PruningBrain

X = torch.rand(2, 12, 20)


def _setup(model):
    base = count_params(model)

    def cost_ratio(m, depth):
        return count_params(m) / base

    def width_choice(m, fraction, depth):
        groups = discover_groups(m, X)
        scores = {
            g.id: torch.arange(g.size, dtype=torch.float)
            for g in groups.prunable()
        }
        sel = Selector(target=fraction, target_type="params")
        return groups, sel.select(m, groups, scores, run=X)

    return cost_ratio, width_choice


def _n_layers(m):
    return m.RNN.rnn.num_layers


@pytest.mark.parametrize("prefer", ["depth", "width"])
def test_the_mix_with_the_lowest_loss_wins(prefer):
    model = build_crdnn(rnn="lstm", rnn_layers=3)
    cost_ratio, width_choice = _setup(model)
    sizes = {g.id: g.size for g in discover_groups(model, X).values()}

    def loss_of(m):
        if prefer == "depth":  # every removed channel costs, layers do not
            groups = discover_groups(m, X).values()
            return float(sum(sizes[g.id] - g.size for g in groups))
        return float(3 - _n_layers(m))  # layers cost, channels are free

    cands = allowed_depth_candidates(model)
    choice, report = choose_depth_and_width(
        model, cands, 0.7, cost_ratio, width_choice, loss_of
    )
    feasible = [r for r in report if r["loss"] is not None]
    assert [r for r in report if r["chosen"]][0]["loss"] == min(
        r["loss"] for r in feasible
    )
    pruned = copy.deepcopy(model)
    choice.apply(pruned)
    assert count_params(pruned) <= 0.7 * count_params(model) * 1.01
    if prefer == "width":
        assert choice.depth == [] and choice.n_channels > 0
        assert _n_layers(pruned) == 3
    else:
        assert choice.depth, report
        assert _n_layers(pruned) < 3
    # The model it was measured on is the model it applies.
    assert loss_of(pruned) == pytest.approx(
        [r for r in report if r["chosen"]][0]["loss"]
    )


def test_protected_layers_are_no_candidates():
    model = build_crdnn(rnn="gru", rnn_layers=3)
    names = [c.name for c in allowed_depth_candidates(model)]
    assert "RNN:1" in names and "RNN:2" in names
    kept = allowed_depth_candidates(model, ["RNN*"])
    assert all(not c.name.startswith("RNN") for c in kept)


class SquareBrain(PruningBrain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch)

    def compute_objectives(self, out, batch, stage):
        return out.pow(2).mean()


@pytest.mark.parametrize("depth", [True, False])
def test_stage_applies_the_mix_it_measured(depth):
    """The live model after a stage has exactly the loss of the chosen
    mix, its plan replays on a fresh model, and the optimizer holds the
    model's parameters."""
    torch.manual_seed(0)
    model = build_crdnn(rnn="lstm", rnn_layers=3).train()
    fresh = copy.deepcopy(model)
    data = [torch.rand(12, 20) for _ in range(4)]
    pruner = Pruner(
        TaylorScorer(n_batches=2),
        target=0.5,
        start_epoch=2,
        depth=depth,
        selection={"target_type": "params"},
    )
    brain = SquareBrain(
        {"model": model}, lambda p: torch.optim.Adam(p, 1e-3), pruner=pruner
    )
    brain.fit(range(1, 3), data, train_loader_kwargs={"batch_size": 2})
    (record,) = pruner.history
    assert record["params_after"] <= 0.5 * record["base_params"]
    if not depth:
        assert record["mixes"] == [] and record["depth"] == []
    else:
        rows = record["mixes"]
        assert len(rows) >= 2 and rows[0]["depth"] == []
        (chosen,) = [r for r in rows if r["chosen"]]
        assert chosen["loss"] == min(
            r["loss"] for r in rows if r["loss"] is not None
        )
        assert chosen["depth"] == record["depth"]
    # Replay on a fresh copy of the unpruned model: same shapes.
    PruningPlan.from_dict(pruner.plan.to_dict()).apply(
        torch.nn.ModuleDict({"model": fresh})
    )
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    params = {id(p) for p in model.parameters()}
    in_opt = {id(p) for g in brain.optimizer.param_groups for p in g["params"]}
    assert in_opt == params


def test_depth_option_is_checked():
    with pytest.raises(ValueError, match="depth"):
        Pruner("magnitude", target=0.3, depth="yes")
    assert Pruner("magnitude", target=0.3).uses_depth is False
    lat = Pruner("magnitude", target=0.3, selection={"target_type": "latency"})
    assert lat.uses_depth is True


def test_selector_and_schedule_as_yaml_objects():
    """``selection: !new:...Selector`` and ``schedule: !new:...Schedule``
    build the same pruner as the dict and keys."""
    from hyperpyyaml import load_hyperpyyaml

    objects = load_hyperpyyaml(
        """
pruner: !new:speechbrain_prune.Pruner
    scorer: magnitude
    schedule: !new:speechbrain_prune.PruningSchedule
        target: 0.4
        start_epoch: 3
        n_stages: 2
    selection: !new:speechbrain_prune.selection.Selector
        target_type: params
        round_to: 4
        protect: ["model.CNN.*"]
"""
    )["pruner"]
    keys = Pruner(
        "magnitude",
        target=0.4,
        start_epoch=3,
        n_stages=2,
        selection={
            "target_type": "params",
            "round_to": 4,
            "protect": ["model.CNN.*"],
        },
    )
    assert objects.schedule.stages == keys.schedule.stages
    assert objects.measure == keys.measure == "params"
    a, b = objects._selector(0.2).options(), keys._selector(0.2).options()
    assert a == b
    with pytest.raises(ValueError, match="either `schedule` or `target`"):
        Pruner("magnitude", target=0.3, schedule=objects.schedule)


@pytest.mark.parametrize("depth", [False, True])
def test_prune_step_without_a_brain(depth):
    """The Brain-free step: the target is met, the plan replays on a fresh
    model to the same function."""
    from speechbrain_prune.step import prune_step

    model = build_crdnn(rnn="gru", rnn_layers=3)
    fresh = copy.deepcopy(model)
    plan = PruningPlan()
    before = count_params(model)
    choice, _ = prune_step(
        model,
        lambda m: m(X),
        lambda m, b: m(b).pow(2).mean(),
        [X],
        TaylorScorer(n_batches=1, progress=False),
        0.4,
        plan=plan,
        depth=depth,
    )
    assert count_params(model) <= 0.6 * before
    PruningPlan.from_dict(plan.to_dict()).apply(fresh)
    fresh.load_state_dict(model.state_dict())
    assert torch.allclose(fresh.eval()(X), model.eval()(X), atol=1e-6)
