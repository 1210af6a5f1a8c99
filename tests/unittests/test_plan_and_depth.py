"""Pruning plans (replay, strict loading, refusal) and depth pruning."""

import copy

import pytest
import speechbrain as sb
import torch
from conftest import build_crdnn, random_removals

from speechbrain_prune.graph import discover_groups
from speechbrain_prune.plan import PlanMismatchError, PruningPlan
from speechbrain_prune.surgery import apply_removals
from speechbrain_prune.surgery.modules import StackedRNN

X = torch.rand(2, 12, 20)


@pytest.mark.parametrize("rnn", ["ligru", "lstm", "gru", "sligru"])
def test_replay_gives_same_shapes_and_strict_load(rnn, tmp_path):
    model = build_crdnn(rnn=rnn, rnn_layers=3, dnn_blocks=3)
    plan = PruningPlan()
    plan.remove_block(model, "DNN.block_2")
    plan.remove_rnn_layer(model, "RNN", 2)
    # Two stages, rediscovering groups in between.
    for stage in range(2):
        groups = discover_groups(model, X)
        plan.prune(model, groups, random_removals(groups, 0.3, seed=stage))
    path = tmp_path / "plan.yaml"
    plan.save(path)
    fresh = build_crdnn(seed=5, rnn=rnn, rnn_layers=3, dnn_blocks=3)
    PruningPlan.load(path).apply(fresh)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(fresh(X), model(X))
    json_path = tmp_path / "plan.json"
    plan.save(json_path)
    assert PruningPlan.load(json_path).to_dict() == plan.to_dict()


def test_plan_records_sizes_and_version():
    model = build_crdnn(rnn="lstm")
    groups = discover_groups(model, X)
    plan = PruningPlan()
    plan.prune(model, groups, {"RNN.layer0": [0, 2], "DNN.block_0.linear": []})
    (step,) = plan.steps
    (entry,) = step["groups"]
    assert entry["id"] == "RNN.layer0"
    assert (entry["size"], entry["size_after"]) == (7, 5)
    assert entry["removed"] == [0, 2]
    assert plan.to_dict()["speechbrain_prune_version"]
    assert "RNN.layer0 7->5" in plan.summary()


def test_plan_that_does_not_fit_is_refused_before_changes():
    model = build_crdnn(rnn="lstm")
    plan = PruningPlan()
    groups = discover_groups(model, X)
    plan.prune(model, groups, {"CNN.block_1.conv_2": [1]})
    other = build_crdnn(rnn="lstm", cnn_channels=[6, 10])
    state = copy.deepcopy(other.state_dict())
    with pytest.raises(PlanMismatchError, match="CNN.block_1.conv_2.*10.*8"):
        plan.apply(other)
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k])
    missing = build_crdnn(
        rnn="lstm", cnn_blocks=1, cnn_channels=[6], inter_layer_pooling_size=[2]
    )
    with pytest.raises(PlanMismatchError, match="no module"):
        plan.apply(missing)


def test_non_uniform_lstm_widths_are_exact():
    """Layers pruned to different widths: the torch module becomes a stack
    of one-layer modules with identical numerics."""
    torch.manual_seed(0)
    lstm = sb.nnet.RNN.LSTM(
        hidden_size=6, input_size=4, num_layers=3, bidirectional=True
    ).eval()
    x = torch.rand(2, 5, 4)
    root = torch.nn.ModuleDict({"rnn": lstm})
    # Keeping all channels through a rebuild changes nothing.
    from speechbrain_prune.handlers.rnn import RNNView

    stacked_view = RNNView(lstm.rnn)
    out = lstm(x)[0]
    rebuilt = stacked_view.rebuild({}, None)
    assert type(rebuilt) is torch.nn.LSTM
    groups = discover_groups(root, lambda m: m.rnn(x)[0])
    apply_removals(root, groups, {"rnn.layer1": [0, 3]})
    assert isinstance(lstm.rnn, StackedRNN)
    assert [m.hidden_size for m in lstm.rnn.layers] == [6, 4, 6]
    assert lstm(x)[0].shape == out.shape
    lstm.train()
    lstm(x)[0].sum().backward()


@pytest.mark.parametrize("rnn", ["ligru", "lstm", "gru", "sligru"])
def test_remove_rnn_layer_and_dnn_block(rnn):
    model = build_crdnn(rnn=rnn, rnn_layers=3, dnn_blocks=3)
    out_shape = model(X).shape
    params = sum(p.numel() for p in model.parameters())
    plan = PruningPlan()
    plan.remove_rnn_layer(model, "RNN", 1)
    plan.remove_block(model, "DNN.block_1")
    assert model(X).shape == out_shape
    assert sum(p.numel() for p in model.parameters()) < params
    groups = discover_groups(model, X)
    assert "RNN.layer2" not in groups and "RNN.layer1" in groups
    with pytest.raises(ValueError, match="widths agree"):
        plan.remove_rnn_layer(model, "RNN", 0)
    with pytest.raises(ValueError, match="widths"):
        plan.remove_block(model, "DNN.block_0")


def test_ligru_non_uniform_widths_run():
    model = build_crdnn(rnn="ligru", rnn_layers=3)
    groups = discover_groups(model, X)
    apply_removals(model, groups, {"RNN.layer1": [0, 1, 2]})
    assert type(model.RNN).__name__ == "NonUniformLiGRU"
    out, states = model.RNN(torch.rand(2, 12, 5, 8))
    assert [s.shape[-1] for s in states] == [14, 8, 14]  # both directions
    assert model(X).shape == (2, 12, 9)
