"""The modules of SpeechBrain's TIMIT transducer CRDNN recipe
(recipes/TIMIT/ASR/transducer, its forward as train.py writes it): the
encoder and the prediction network prune; the joint dimension is reported
as blocked, with the reason (docs/stock_recipes.md says why)."""

import speechbrain as sb
import torch
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.nnet.transducer.transducer_joint import Transducer_joint

from speechbrain_prune.graph import discover_groups
from speechbrain_prune.reference import masked_reference
from speechbrain_prune.surgery import apply_removals

N_OUT, JOINT, N_MELS = 12, 16, 20


def transducer_modules():
    """The recipe's modules at tiny sizes (its YAML's classes, options)."""
    torch.manual_seed(0)
    enc = CRDNN(
        input_shape=[None, None, N_MELS],
        cnn_channels=(8, 8),
        time_pooling=True,
        rnn_layers=1,
        rnn_neurons=16,
        dnn_blocks=1,
        dnn_neurons=16,
    )
    dec = sb.nnet.RNN.LiGRU(
        input_shape=[None, None, N_OUT - 1],
        hidden_size=16,
        num_layers=1,
        dropout=0.0,
        normalization="layernorm",
        bidirectional=False,
    )
    return torch.nn.ModuleDict(
        {
            "enc": enc,
            "enc_lin": sb.nnet.linear.Linear(JOINT, input_size=16, bias=False),
            "emb": sb.nnet.embedding.Embedding(
                N_OUT, consider_as_one_hot=True, blank_id=0
            ),
            "dec": dec,
            "dec_lin": sb.nnet.linear.Linear(JOINT, input_size=16, bias=False),
            "Tjoint": Transducer_joint(
                joint="sum", nonlinearity=torch.nn.LeakyReLU
            ),
            "output": sb.nnet.linear.Linear(N_OUT, input_size=JOINT),
        }
    ).eval()


def forward(feats, tokens):
    """The recipe's ``compute_forward`` (train.py), without the search."""

    def run(m):
        x = m["enc_lin"](m["enc"](feats))
        h, _ = m["dec"](m["emb"](tokens))
        h = m["dec_lin"](h)
        return m["output"](m["Tjoint"](x.unsqueeze(2), h.unsqueeze(1)))

    return run


def test_transducer_encoder_and_prediction_network_prune():
    model = transducer_modules()
    gen = torch.Generator().manual_seed(1)
    feats = torch.rand(2, 40, N_MELS, generator=gen)
    tokens = torch.randint(1, N_OUT, (2, 5), generator=gen)
    run = forward(feats, tokens)
    groups = discover_groups(model, run)
    prunable = {g.id for g in groups.prunable()}
    assert "dec.layer0" in prunable and "enc.RNN.layer0" in prunable
    assert "enc.DNN.block_0.linear" in prunable
    blocked = {k: g for k, g in groups.items() if k not in prunable}
    # The joint dimension: the recipe unsqueezes outside any module.
    for key in ("enc_lin", "dec_lin"):
        assert "unsqueeze" in " ".join(blocked[key].reasons)
    removals = {
        g.id: list(range(0, g.size - g.min_size, 2)) for g in groups.prunable()
    }
    ref = masked_reference(model, groups, removals)
    before = sum(p.numel() for p in model.parameters())
    apply_removals(model, groups, removals)
    with torch.no_grad():
        out, expected = run(model), run(ref)
    assert out.shape == (2, 20, 5, N_OUT)  # time pooling: 40 -> 20
    assert torch.allclose(out, expected, atol=1e-5)
    assert model["dec_lin"].w.weight.shape[1] < 16
    assert sum(p.numel() for p in model.parameters()) < before
