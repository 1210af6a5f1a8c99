"""MAC counting against analytic formulas."""

import speechbrain as sb
import torch
from conftest import build_crdnn, random_removals

from speechbrain_prune.costs import count_macs, group_costs, macs_by_module
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.surgery import apply_removals


def lstm_macs(steps, gates, sizes, dirs):
    """sizes: [(input, hidden)] per layer."""
    return sum(steps * dirs * gates * h * (i + h) for i, h in sizes)


def test_lstm_gru_formula():
    for cls, gates in [(sb.nnet.RNN.LSTM, 4), (sb.nnet.RNN.GRU, 3)]:
        for bi in (False, True):
            net = cls(
                hidden_size=7, input_size=5, num_layers=3, bidirectional=bi
            )
            dirs = 2 if bi else 1
            expected = lstm_macs(
                2 * 11, gates, [(5, 7), (7 * dirs, 7), (7 * dirs, 7)], dirs
            )
            assert count_macs(net, (2, 11, 5)) == expected


def test_ligru_formula():
    net = sb.nnet.RNN.LiGRU(
        6, input_shape=(2, 9, 4), num_layers=2, bidirectional=True
    )
    b, t, dirs, h = 2, 9, 2, 6
    per_layer = []
    for i in (4, 2 * h):
        w = dirs * b * t * i * 2 * h  # input projection, both copies
        u = dirs * b * t * h * 2 * h  # recurrent, every step
        norm = dirs * b * t * 2 * h  # batch norm over 2H
        per_layer.append(w + u + norm)
    assert count_macs(net, (b, t, 4)) == sum(per_layer)


def sligru_macs(b, t, dirs, sizes):
    """sizes: [(input, hidden)] per layer."""
    total = 0
    for i, h in sizes:
        total += dirs * b * t * i * 2 * h  # w on the input and its flip
        total += dirs * b * t * h * 2 * h  # u, every step
        total += dirs * b * t * 2 * h  # recurrent LayerNorm, every step
        total += dirs * b * t * 2 * h  # feed-forward norm over 2H
    return total


def test_sligru_formula_before_and_after_pruning():
    """Exact before and after layers are pruned to different widths."""
    torch.manual_seed(0)
    net = sb.nnet.RNN.SLiGRU(
        6, input_shape=(2, 9, 4), num_layers=2, bidirectional=True
    )
    model = sb.nnet.containers.Sequential(
        net, sb.nnet.linear.Linear(n_neurons=3, input_size=12)
    )
    b, t = 2, 9
    head = b * t * 12 * 3
    expected = sligru_macs(b, t, 2, [(4, 6), (12, 6)]) + head
    assert count_macs(model, (b, t, 4)) == expected
    groups = discover_groups(model.eval(), torch.rand(b, t, 4))
    apply_removals(model, groups, {"0.layer0": [0, 1], "0.layer1": [5]})
    # Layer 1 reads 2 x 4 columns; the head reads 2 x 5.
    expected = sligru_macs(b, t, 2, [(4, 4), (8, 5)]) + b * t * 10 * 3
    assert count_macs(model, (b, t, 4)) == expected


def test_crdnn_formula():
    """Whole CRDNN: conv, 2-D LayerNorm, LSTM, Linear, BatchNorm."""
    model = build_crdnn(
        rnn="lstm",
        cnn_blocks=1,
        cnn_channels=[4],
        inter_layer_pooling_size=[2],
        rnn_layers=1,
        dnn_blocks=1,
        rnn_bidirectional=False,
    )
    b, t, f = 1, 10, 20
    conv1 = b * t * f * 4 * (1 * 9)
    conv2 = b * t * f * 4 * (4 * 9)
    norms = 2 * b * t * f * 4
    rnn = lstm_macs(b * t, 4, [((f // 2) * 4, 7)], 1)
    dnn = b * t * 7 * 9 + b * t * 9
    assert count_macs(model, (b, t, f)) == conv1 + conv2 + norms + rnn + dnn


def test_attention_decoder_per_step():
    dec = sb.nnet.RNN.AttentionalRNNDecoder(
        "lstm", "content", 8, 6, 1, enc_dim=5, input_size=3
    )
    b, t_enc, t_dec = 2, 7, 4
    enc = torch.rand(b, t_enc, 5)

    counts = macs_by_module(
        dec, run=lambda m: m(torch.rand(b, t_dec, 3), enc, torch.ones(b))
    )
    per_step = (
        b * 4 * 8 * (3 + 6 + 8)  # LSTMCell on [input, context]
        + b * 8 * 6  # mlp_dec
        + b * t_enc * 6 * 1  # mlp_attn
        + b * t_enc * 5  # context product
        + b * 5 * 6  # mlp_out
        + b * (8 + 6) * 8  # proj
    )
    once = b * t_enc * 5 * 6  # mlp_enc, precomputed
    assert counts["attn.mlp_enc"] == once
    assert sum(counts.values()) == t_dec * per_step + once


def test_macs_drop_by_group_costs():
    """Removing n channels of a group saves n x its per-channel cost
    (for a group whose neighbours keep their widths)."""
    model = build_crdnn(rnn="ligru")
    x = torch.rand(1, 12, 20)
    groups = discover_groups(model, x)
    costs = group_costs(model, groups, x)
    before = count_macs(model, run=x)
    gid = "DNN.block_0.linear"
    apply_removals(model, groups, {gid: [0, 1, 2]})
    assert before - count_macs(model, run=x) == 3 * costs[gid]["macs"]


def test_random_pruning_reduces_macs_by_expected_amount():
    model = build_crdnn(
        rnn="lstm",
        cnn_channels=[10, 10],
        rnn_neurons=10,
        dnn_neurons=10,
        dnn_blocks=2,
    )
    x = torch.rand(1, 12, 20)
    before = count_macs(model, run=x)
    groups = discover_groups(model, x)
    apply_removals(model, groups, random_removals(groups, 0.5))
    after = count_macs(model, run=x)
    # Widths halve: bilinear terms fall to ~1/4, linear ones to ~1/2.
    assert 0.2 < after / before < 0.5
