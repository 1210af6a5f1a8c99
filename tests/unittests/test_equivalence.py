"""Physically pruned models equal the masked reference, for every handler
and for whole CRDNN configurations."""

import itertools

import pytest
import speechbrain as sb
import torch
from conftest import build_crdnn, random_removals, randomise_norms

from speechbrain_prune.graph import discover_groups
from speechbrain_prune.handlers.layernorm import masked_layer_norm
from speechbrain_prune.reference import masked_reference
from speechbrain_prune.surgery import apply_removals

ATOL = 1e-5


def prune_and_compare(model, x, fraction, seed=0, compare=None):
    """Prunes ``model`` at random; returns max |pruned - reference|."""
    groups = discover_groups(model, x)
    removals = random_removals(groups, fraction, seed)
    ref = masked_reference(model, groups, removals)
    apply_removals(model, groups, removals)
    with torch.no_grad():
        out, expected = model(x), ref(x)
    if compare is not None:
        expected = compare(expected, groups, removals)
    assert out.shape == expected.shape
    return (out - expected).abs().max().item()


CONFIGS = {
    "1cnn-1rnn-1dnn": dict(
        cnn_blocks=1,
        cnn_channels=[5],
        rnn_layers=1,
        dnn_blocks=1,
        inter_layer_pooling_size=[2],
    ),
    "2cnn-2rnn-2dnn": {},
    "3cnn-time_pool": dict(
        cnn_blocks=3,
        cnn_channels=[4, 6, 5],
        inter_layer_pooling_size=[2, 1, 2],
        time_pooling=True,
    ),
    "2d-pooling": dict(using_2d_pooling=True),
    "projection": dict(projection_dim=11),
    "re_init-4rnn-3dnn": dict(rnn_re_init=True, rnn_layers=4, dnn_blocks=3),
    "3rnn": dict(rnn_layers=3),
}


@pytest.mark.parametrize("rnn", ["ligru", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_crdnn_equals_masked_reference(rnn, bidirectional, config):
    model = build_crdnn(
        rnn=rnn, rnn_bidirectional=bidirectional, **CONFIGS[config]
    )
    x = torch.rand(2, 16, 20)
    assert prune_and_compare(model, x, 0.4, seed=1) < ATOL


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("config", ["1cnn-1rnn-1dnn", "3rnn", "projection"])
def test_sligru_crdnn_equals_masked_reference(bidirectional, config):
    """In float64: SLiGRU's recurrent LayerNorm (no affine parameters by
    default) amplifies float32 rounding over steps and layers (3rnn,
    bidirectional: 3e-4 in float32, 5e-13 in float64)."""
    model = build_crdnn(
        rnn="sligru", rnn_bidirectional=bidirectional, **CONFIGS[config]
    )
    x = torch.rand(2, 16, 20)
    model, x = model.double(), x.double()
    assert prune_and_compare(model, x, 0.4, seed=1) < 1e-9


@pytest.mark.parametrize("rnn", ["ligru", "lstm"])
def test_ctc_head_and_many_random_sizes(rnn):
    """Random removals of any size keep the model runnable and exact."""
    for seed, fraction in itertools.product(range(3), [0.1, 0.5, 0.9]):
        crdnn = build_crdnn(seed=seed, rnn=rnn)
        model = sb.nnet.containers.Sequential(
            crdnn, sb.nnet.linear.Linear(n_neurons=12, input_size=9)
        ).eval()
        x = torch.rand(3, 11, 20)
        assert prune_and_compare(model, x, fraction, seed=seed) < ATOL


def test_removing_nothing_changes_nothing():
    model = build_crdnn(rnn="lstm")
    x = torch.rand(2, 12, 20)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(x)
    groups = discover_groups(model, x)
    apply_removals(model, groups, {g.id: [] for g in groups.prunable()})
    assert torch.equal(model(x), out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_zeroing_is_not_a_reference():
    """Why the reference masks statistics: zeroing a conv channel's weights
    is NOT the same as removing it (CNN LayerNorm is joint over
    freq x channels), while the masked reference is."""
    model = build_crdnn(rnn="lstm")
    x = torch.rand(2, 12, 20)
    groups = discover_groups(model, x)
    gid = "CNN.block_0.conv_1"
    removals = {gid: torch.tensor([0, 3])}
    zeroed = masked_reference(model, groups, {})
    with torch.no_grad():
        conv = zeroed.CNN.block_0.conv_1.conv
        conv.weight[[0, 3]] = 0.0
        conv.bias[[0, 3]] = 0.0
        zeroed.CNN.block_0.norm_1.norm.weight[:, [0, 3]] = 0.0
        zeroed.CNN.block_0.norm_1.norm.bias[:, [0, 3]] = 0.0
    ref = masked_reference(model, groups, removals)
    apply_removals(model, groups, removals)
    pruned = model(x)
    assert (zeroed(x) - pruned).abs().max() > 1e-3
    assert (ref(x) - pruned).abs().max() < ATOL


def test_reference_ignores_removed_channels():
    """The reference itself: whatever removed channels hold, the kept
    outputs do not change (producer rows, norm entries, recurrent units)."""
    for rnn in ["ligru", "lstm", "gru", "sligru"]:
        model = build_crdnn(rnn=rnn)
        x = torch.rand(2, 12, 20)
        groups = discover_groups(model, x)
        removals = random_removals(groups, 0.3, seed=4)
        ref = masked_reference(model, groups, removals)
        out = ref(x)
        from speechbrain_prune.handlers import handler_for

        with torch.no_grad():
            for gid, removed in removals.items():
                for m in groups[gid].members:
                    if m.role == "consumer":
                        continue
                    module = ref.get_submodule(m.module)
                    for p, dim, idx in handler_for(module).param_slices(
                        module, m
                    ):
                        if m.slot.startswith("hidden") and dim == 1:
                            continue  # recurrent columns: consumers
                        sel = idx[removed].flatten()
                        noise = torch.randn_like(p.index_select(dim, sel))
                        p.index_copy_(dim, sel, noise * 3)
        assert (ref(x) - out).abs().max() < ATOL, rnn


@pytest.mark.parametrize("ff_normalization", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("affine", [False, True])
def test_sligru_options_equal_masked_reference(ff_normalization, affine):
    """SLiGRU's recurrent LayerNorm (with and without affine parameters) and
    its two feed-forward norms; layers pruned to different widths."""
    torch.manual_seed(3)
    rnn = sb.nnet.RNN.SLiGRU(
        8,
        input_shape=(2, 9, 5),
        num_layers=3,
        bidirectional=True,
        ff_normalization=ff_normalization,
        recurrent_elementwise_affine=affine,
    )
    model = sb.nnet.containers.Sequential(
        rnn, sb.nnet.linear.Linear(n_neurons=4, input_size=16)
    )
    randomise_norms(model)
    model.eval().double()
    x = torch.rand(2, 9, 5, dtype=torch.float64)
    groups = discover_groups(model, x)
    removals = {"0.layer0": [1, 6], "0.layer1": [0, 2, 3, 7], "0.layer2": [5]}
    ref = masked_reference(model, groups, removals)
    apply_removals(model, groups, removals)
    assert type(rnn).__name__ == "NonUniformSLiGRU"
    assert [layer.hidden_size for layer in rnn.rnn] == [6, 4, 7]
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() < 1e-9
    # Its last states: one tensor per layer, both directions.
    assert [s.shape for s in rnn(x)[1]] == [(2, 12), (2, 8), (2, 14)]


def test_masked_layer_norm_matches_sliced_norm():
    norm = torch.nn.LayerNorm((5, 6))
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 5, 6)
    keep = torch.tensor([1, 2, 5])
    sliced = torch.nn.functional.layer_norm(
        x[..., keep], (5, 3), norm.weight[:, keep], norm.bias[:, keep]
    )
    out = masked_layer_norm(x, norm, keep)
    assert torch.allclose(out[..., keep], sliced, atol=1e-6)
    assert torch.all(out[..., [0, 3, 4]] == 0)


def test_training_mode_forward_backward_and_memory():
    model = build_crdnn(rnn="lstm").train()
    x = torch.rand(2, 12, 20)
    groups = discover_groups(model.eval(), x)
    params_before = sum(p.numel() for p in model.parameters())
    apply_removals(model, groups, random_removals(groups, 0.5))
    model.train()
    out = model(x)
    out.sum().backward()
    assert all(
        p.grad is not None for p in model.parameters() if p.requires_grad
    )
    params_after = sum(p.numel() for p in model.parameters())
    assert params_after < 0.5 * params_before
    # No hidden full-size copies: every tensor in the state has its new size.
    state_numel = sum(
        v.numel()
        for k, v in model.state_dict().items()
        if "drop_mask" not in k and "num_batches" not in k
    )
    assert state_numel < 0.6 * params_before + 1000


def test_seq2seq_encoder_decoder_couplings():
    """CTC head and attentional decoder consume the encoder output."""
    torch.manual_seed(0)
    enc = build_crdnn(rnn="lstm")
    emb = sb.nnet.embedding.Embedding(num_embeddings=10, embedding_dim=4)
    dec = sb.nnet.RNN.AttentionalRNNDecoder(
        "lstm",
        "location",
        8,
        6,
        1,
        enc_dim=9,
        input_size=4,
        channels=3,
        kernel_size=5,
    )
    modules = torch.nn.ModuleDict(
        {
            "enc": enc,
            "emb": emb,
            "dec": dec,
            "ctc_lin": sb.nnet.linear.Linear(n_neurons=10, input_size=9),
            "seq_lin": sb.nnet.linear.Linear(n_neurons=10, input_size=8),
        }
    ).eval()
    feats = torch.rand(2, 14, 20)
    tokens = torch.randint(0, 10, (2, 5))
    lens = torch.ones(2)

    def run(m):
        x = m.enc(feats)
        h, _ = m.dec(m.emb(tokens), x, lens)
        return m.ctc_lin(x), m.seq_lin(h)

    groups = discover_groups(modules, run)
    enc_out = groups["enc.DNN.block_1.linear"]
    assert enc_out.prunable
    assert {m.module for m in enc_out.consumers} == {"dec", "ctc_lin"}
    assert not groups["ctc_lin"].prunable
    removals = random_removals(groups, 0.4, seed=2)
    ref = masked_reference(modules, groups, removals)
    apply_removals(modules, groups, removals)
    for a, b in zip(run(modules), run(ref)):
        assert (a - b).abs().max() < ATOL


def test_untraced_use_blocks_the_group():
    """An operation on a group's tensor outside any module is never
    guessed through: the group is reported and refused."""
    model = build_crdnn(rnn="gru")
    head = sb.nnet.linear.Linear(n_neurons=4, input_size=9)
    modules = torch.nn.ModuleDict({"enc": model, "head": head}).eval()
    groups = discover_groups(modules, lambda m: m.head(m.enc(feats) * 2.0))
    gid = "enc.DNN.block_1.linear"
    assert not groups[gid].prunable
    assert "mul" in " ".join(groups[gid].reasons)
    with pytest.raises(ValueError, match="may not be pruned"):
        apply_removals(modules, groups, {gid: [0]})


feats = torch.rand(1, 10, 20)


def test_unknown_layer_is_reported_not_pruned():
    class Mixer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.eye(6))

        def forward(self, x):
            return x @ self.p

    model = sb.nnet.containers.Sequential(
        sb.nnet.linear.Linear(n_neurons=6, input_size=3),
        Mixer(),
        sb.nnet.linear.Linear(n_neurons=2, input_size=6),
    )
    groups = discover_groups(model, torch.rand(1, 4, 3))
    assert not groups["0"].prunable
    assert "Mixer" in groups["0"].reasons[0]


def test_declared_coupling_for_a_module_the_forward_skips():
    """A CTC head that the traced forward does not call (stock seq2seq
    recipes skip it after some epochs) is reported as untraced, and a
    one-line declaration connects it."""
    enc = build_crdnn(rnn="gru")
    modules = torch.nn.ModuleDict(
        {
            "enc": enc,
            "ctc_lin": sb.nnet.linear.Linear(n_neurons=4, input_size=9),
            "seq_lin": sb.nnet.linear.Linear(n_neurons=4, input_size=9),
        }
    ).eval()

    def run(m):
        return m.seq_lin(m.enc(feats))

    groups = discover_groups(modules, run)
    assert groups.untraced == ("ctc_lin",)
    assert groups.observed_couplings == {"seq_lin": "enc"}
    both = discover_groups(
        modules, lambda m: (m.seq_lin(m.enc(feats)), m.ctc_lin(m.enc(feats)))
    )
    assert both.observed_couplings == {"seq_lin": "enc", "ctc_lin": "enc"}
    groups = discover_groups(modules, run, couplings={"ctc_lin": "enc"})
    assert groups.untraced == ()
    gid = "enc.DNN.block_1.linear"
    assert {m.module for m in groups[gid].consumers} == {"ctc_lin", "seq_lin"}
    apply_removals(modules, groups, {gid: [0, 1]})
    assert modules.ctc_lin(modules.enc(feats)).shape[-1] == 4
    with pytest.raises(KeyError, match="not a top-level module"):
        discover_groups(modules, run, couplings={"nope": "enc"})
