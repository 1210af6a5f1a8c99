"""Pruning inside training: optimizer remap, schedules, early errors."""

import pytest
import speechbrain as sb
import torch
from conftest import build_crdnn, random_removals
from hyperpyyaml import load_hyperpyyaml

from speechbrain_prune.graph import discover_groups
from speechbrain_prune.plan import PruningPlan
from speechbrain_prune.surgery.ledger import select
from speechbrain_prune.training import (
    Pruner,
    PruningBrain,
    PruningCheckpointer,
    PruningSchedule,
    remap_optimizer,
)

X = torch.rand(2, 12, 20)

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, 1e-3),
    "adadelta": lambda p: torch.optim.Adadelta(p, 1.0),
    "sgd_momentum": lambda p: torch.optim.SGD(p, 0.1, momentum=0.9),
}


def train_steps(model, opt, n=2):
    for _ in range(n):
        opt.zero_grad()
        model(X).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("rnn", ["lstm", "ligru"])
def test_optimizer_state_follows_the_channels(opt_name, rnn):
    model = build_crdnn(rnn=rnn, rnn_layers=3).train()
    opt = OPTIMIZERS[opt_name](model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train_steps(model, opt)
    old_state = {
        id(p): {
            k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)
        }
        for p in model.parameters()
    }
    groups = discover_groups(model.eval(), X)
    plan = PruningPlan()
    ledger = plan.prune(model, groups, random_removals(groups, 0.4))
    ledger = plan.remove_rnn_layer(model, "RNN", 2, ledger)
    remap_optimizer(opt, ledger, model.parameters())
    live = list(model.parameters())
    assert [id(p) for p in opt.param_groups[0]["params"]] == [
        id(p) for p in live
    ]
    checked = 0
    for new, orig, index in ledger.items():
        if any(new is p for p in live):
            for key, old in old_state[id(orig)].items():
                if old.shape == orig.shape and old.dim():
                    assert torch.equal(opt.state[new][key], select(old, index))
                    checked += 1
    assert checked > 10
    model.train()
    train_steps(model, opt)  # the optimizer runs on the new shapes
    sched.step()
    assert (
        opt.param_groups[0]["lr"]
        < OPTIMIZERS[opt_name](
            [torch.nn.Parameter(torch.zeros(1))]
        ).param_groups[0]["lr"]
    )


def test_reset_drops_state():
    model = build_crdnn(rnn="gru").train()
    opt = torch.optim.Adam(model.parameters())
    train_steps(model, opt, 1)
    groups = discover_groups(model.eval(), X)
    ledger = PruningPlan().prune(model, groups, {"RNN.layer0": [0, 1]})
    remap_optimizer(opt, ledger, model.parameters(), reset=True)
    sliced = [new for new, _, _ in ledger.items()]
    assert all(p not in opt.state for p in sliced)
    model.train()
    train_steps(model, opt, 1)


def test_schedule_ramps_and_checks():
    assert PruningSchedule(
        target=0.5, start_epoch=3, n_stages=2, every=3, ramp="linear"
    ).stages == [(3, 0.25), (6, 0.5)]
    assert PruningSchedule(target=0.3).due(1, []) == [0]
    assert PruningSchedule(target=0.3, start_epoch=2).due(5, [0]) == []
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        PruningSchedule(target=1.0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        PruningSchedule(stages=[{"epoch": 2, "target": 0.0}])
    with pytest.raises(ValueError, match="increase"):
        PruningSchedule(
            stages=[{"epoch": 2, "target": 0.2}, {"epoch": 2, "target": 0.3}]
        )


YAML = """
model: !new:torch.nn.Linear [4, 4]
pruner: !new:speechbrain_prune.Pruner
    scorer: {scorer}
    target: {target}
    selection: {selection}
"""


def load(scorer="magnitude", target=0.3, selection="{}"):
    return load_hyperpyyaml(
        YAML.format(scorer=scorer, target=target, selection=selection)
    )


def test_bad_yaml_fails_at_load():
    with pytest.raises(ValueError, match="scorer"):
        load(scorer="tailor")
    with pytest.raises(ValueError, match="target"):
        load(target=1.0)
    with pytest.raises(ValueError, match="target"):
        load(target=-0.2)
    with pytest.raises(ValueError, match="Unknown key.*protekt"):
        load(selection="{protekt: [x]}")
    with pytest.raises(ValueError, match="round_to"):
        load(selection="{round_to: 0}")


class TinyBrain(PruningBrain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch)

    def compute_objectives(self, out, batch, stage):
        return out.pow(2).mean()


def test_bad_module_patterns_fail_when_the_brain_is_built(tmp_path):
    modules = {"model": build_crdnn(rnn="gru")}
    pruner = Pruner(
        "magnitude",
        target=0.3,
        selection={"protect": ["model.RNN*", "model.nope*"]},
    )
    with pytest.raises(ValueError, match="nope.*matches no module"):
        TinyBrain(modules, pruner=pruner)
    pruner = Pruner("magnitude", target=0.3, couplings={"ctc_lin": "model"})
    with pytest.raises(ValueError, match="couplings.*ctc_lin"):
        TinyBrain(modules, pruner=pruner)


def test_jit_and_compile_are_refused_before_training(tmp_path):
    for flag in ("jit", "compile"):
        pruner = Pruner("magnitude", target=0.3)
        with pytest.raises(ValueError, match=f"--{flag}"):
            TinyBrain(
                {"model": build_crdnn(rnn="gru")},
                run_opts={flag: True},
                pruner=pruner,
            )


def test_pruning_brain_needs_a_pruning_checkpointer(tmp_path):
    plain = sb.utils.checkpoints.Checkpointer(tmp_path)
    with pytest.raises(TypeError, match="PruningCheckpointer"):
        TinyBrain(
            {"model": build_crdnn(rnn="gru")},
            checkpointer=plain,
            pruner=Pruner("magnitude", target=0.3),
        )
    pruner = Pruner("magnitude", target=0.3)
    ckpt = PruningCheckpointer(tmp_path / "c", pruner=pruner)
    brain = TinyBrain(
        {"model": build_crdnn(rnn="gru")}, checkpointer=ckpt, pruner=pruner
    )
    assert list(ckpt.recoverables)[0] == "pruner"
    assert pruner.brain is brain


def test_pruning_brain_runs_a_stage_in_fit():
    """The code way in: a stage at epoch 2 of a plain fit()."""
    torch.manual_seed(0)
    model = build_crdnn(rnn="lstm").train()
    data = [torch.rand(12, 20) for _ in range(8)]
    pruner = Pruner("taylor", target=0.4, start_epoch=2, recalibrate_batches=2)
    brain = TinyBrain(
        {"model": model}, lambda p: torch.optim.Adam(p, 1e-3), pruner=pruner
    )
    before = sum(p.numel() for p in model.parameters())
    brain.fit(range(1, 4), data, train_loader_kwargs={"batch_size": 2})
    assert len(pruner.plan) == 1
    (record,) = pruner.history
    assert record["measure"] == "params"  # the default measure
    assert record["params_after"] <= 0.6 * record["base_params"]
    assert sum(p.numel() for p in model.parameters()) < before
    assert all(
        p in brain.optimizer.state or not p.requires_grad
        for p in model.parameters()
    )


class PlainBrain(sb.Brain):
    def compute_forward(self, batch, stage):
        return self.modules.model(batch)

    def compute_objectives(self, out, batch, stage):
        return out.pow(2).mean()


def test_the_yaml_hook_is_idempotent_and_detaches():
    """The YAML route wraps the Brain instance once; detached, training
    runs without stages; attached again, the stage runs."""
    torch.manual_seed(0)
    model = build_crdnn(rnn="gru").train()
    data = [torch.rand(12, 20) for _ in range(4)]
    pruner = Pruner("magnitude", target=0.3, start_epoch=2)
    brain = PlainBrain({"model": model}, lambda p: torch.optim.SGD(p, 0.01))
    pruner.attach(brain)
    wrapped = brain._fit_train
    pruner.attach(brain)  # idempotent: not wrapped twice
    assert brain._fit_train is wrapped
    pruner.detach()
    shapes = [p.shape for p in model.parameters()]
    brain.fit(range(1, 3), data, train_loader_kwargs={"batch_size": 2})
    assert pruner.history == [] and [p.shape for p in model.parameters()] == (
        shapes
    )
    pruner.attach(brain)
    brain.fit(range(2, 3), data, train_loader_kwargs={"batch_size": 2})
    assert len(pruner.history) == 1
    assert sum(p.numel() for p in model.parameters()) < sum(
        s.numel() for s in shapes
    )
