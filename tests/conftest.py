"""Shared fixtures and builders for the test suite.

Tests run one intra-op thread per process (``OMP_NUM_THREADS`` overrides):
the suite's models are tiny and run faster so, and the recipe runs that
tests start as subprocesses inherit it instead of oversubscribing the
cores. Latency measurements set their own thread count.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import speechbrain as sb  # noqa: E402
import torch  # noqa: E402
from speechbrain.lobes.models.CRDNN import CRDNN  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED_DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"
)

RNNS = {
    "ligru": sb.nnet.RNN.LiGRU,
    "lstm": sb.nnet.RNN.LSTM,
    "gru": sb.nnet.RNN.GRU,
    "sligru": sb.nnet.RNN.SLiGRU,
}


def make_crdnn(seed=0, n_feats=20, rnn="lstm", **kw):
    """The small CRDNN of the tests, freshly initialised (training mode)."""
    torch.manual_seed(seed)
    opts = dict(
        input_size=n_feats,
        cnn_blocks=2,
        cnn_channels=[6, 8],
        inter_layer_pooling_size=[2, 2],
        rnn_layers=2,
        rnn_neurons=7,
        rnn_bidirectional=True,
        dnn_blocks=2,
        dnn_neurons=9,
        rnn_class=RNNS[rnn],
    )
    opts.update(kw)
    return CRDNN(**opts)


def build_crdnn(seed=0, n_feats=20, rnn="lstm", **kw):
    """A small CRDNN with randomised norm statistics, in eval mode."""
    model = make_crdnn(seed, n_feats, rnn, **kw)
    randomise_norms(model)
    return model.eval()


def randomise_norms(model):
    """Non-trivial affine parameters and running statistics everywhere."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 1.5)


def random_removals(groups, fraction, seed=0):
    """Removes ``fraction`` of every prunable group, at random."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for group in groups.prunable():
        n = min(group.size - group.min_size, int(round(fraction * group.size)))
        out[group.id] = torch.randperm(group.size, generator=g)[:n].sort()[0]
    return out


def shared_data(name):
    """Path of a corpus in ../shared/data, or skip the test."""
    path = os.path.abspath(os.path.join(SHARED_DATA, name))
    if not os.path.isdir(path):
        pytest.skip(f"{path} is absent (the shared corpora are not here)")
    return path
