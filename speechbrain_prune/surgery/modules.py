"""Modules that surgery builds when a stock module cannot hold the result.

Authors
 * speechbrain-prune team 2026
"""

from typing import List, Optional

import torch
from speechbrain.nnet.RNN import LiGRU
from torch.nn.utils.rnn import PackedSequence


class StackedRNN(torch.nn.Module):
    """Single-layer torch RNNs run one after the other (widths may differ).

    ``torch.nn.LSTM`` / ``GRU`` force one hidden size on all their layers.
    Once layers are pruned to different widths, surgery replaces the
    multi-layer module with this stack of one-layer modules; the numerics
    are those of the multi-layer module (dropout between layers, none after
    the last). The returned state is a list with one entry per layer,
    because the layers' states no longer have one shape.

    Arguments
    ---------
    layers : list of torch.nn.RNNBase
        One-layer RNNs; each one's input size is the previous one's output.
    dropout : float
        Dropout between layers, in training only.

    Example
    -------
    >>> net = StackedRNN([torch.nn.LSTM(3, 4, batch_first=True),
    ...                   torch.nn.LSTM(4, 2, batch_first=True)])
    >>> out, states = net(torch.rand(2, 5, 3))
    >>> out.shape, len(states)
    (torch.Size([2, 5, 2]), 2)
    """

    def __init__(self, layers, dropout=0.0):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        self.dropout = dropout
        self.num_layers = len(layers)

    def flatten_parameters(self):
        """Compacts each layer's weights for cuDNN."""
        for layer in self.layers:
            layer.flatten_parameters()

    def forward(self, x, hx: Optional[List] = None):
        """Runs the layers; ``hx`` is None or a list of per-layer states."""
        states = []
        for i, layer in enumerate(self.layers):
            x, h = layer(x, None if hx is None else hx[i])
            states.append(h)
            if self.training and self.dropout > 0 and i < self.num_layers - 1:
                x = _dropout(x, self.dropout)
        return x, states


def _dropout(x, p):
    if isinstance(x, PackedSequence):
        return x._replace(data=torch.nn.functional.dropout(x.data, p, True))
    return torch.nn.functional.dropout(x, p, True)


class NonUniformLiGRU(LiGRU):
    """``LiGRU`` whose layers may have different widths after pruning.

    SpeechBrain's ``LiGRU`` stacks the last state of every layer into one
    tensor, which needs one width. This subclass returns that state as a
    list (one ``(batch * directions, width)`` tensor per layer) when the
    widths differ; everything else, parameter names included, is
    ``LiGRU``'s own, so checkpoints load unchanged.

    Example
    -------
    >>> net = LiGRU(4, input_shape=(2, 5, 3), num_layers=2)
    >>> net.__class__ = NonUniformLiGRU
    >>> out, h = net(torch.rand(2, 5, 3))
    >>> out.shape
    torch.Size([2, 5, 4])
    """

    def _forward_ligru(self, x, hx: Optional[torch.Tensor]):
        widths = {layer.hidden_size for layer in self.rnn}
        if len(widths) == 1:
            return super()._forward_ligru(x, hx)
        states = []
        for i, layer in enumerate(self.rnn):
            x = layer(x, hx=None if hx is None else hx[i])
            states.append(x[:, -1, :])
        return x, states
