"""An export-time substitute of SpeechBrain's ``LiGRU_Layer``.

``LiGRU_Layer._ligru_cell`` loops over time steps in Python. The
TorchScript-based ONNX exporter traces that loop, i.e. unrolls it for the
example's length: the graph then fails (or silently truncates) on any
other length. Here the recurrence is a ``torch.jit.script`` function,
which the exporter writes as an ONNX ``Loop`` whose trip count is the
input's time axis. :func:`scan_ligru` swaps every ``LiGRU_Layer`` of a
copy of a model for :class:`ScannedLiGRULayer`, which holds the original
layer (same parameters, same buffers) and computes its eval-mode forward.
SpeechBrain itself is not patched.

Authors
 * speechbrain-prune team 2026
"""

import copy
from typing import Optional

import torch
from speechbrain.nnet.RNN import LiGRU_Layer


@torch.jit.script
def _mix(h: torch.Tensor, cand: torch.Tensor, z: torch.Tensor):
    z = torch.sigmoid(z)
    return z * h + (1 - z) * cand


@torch.jit.script
def _scan_relu(w: torch.Tensor, h: torch.Tensor, u: torch.Tensor):
    hs = []
    for k in range(w.shape[1]):
        a, z = (w[:, k] + torch.matmul(h, u)).chunk(2, 1)
        h = _mix(h, torch.relu(a), z)
        hs.append(h)
    return torch.stack(hs, 1)


@torch.jit.script
def _scan_tanh(w: torch.Tensor, h: torch.Tensor, u: torch.Tensor):
    hs = []
    for k in range(w.shape[1]):
        a, z = (w[:, k] + torch.matmul(h, u)).chunk(2, 1)
        h = _mix(h, torch.tanh(a), z)
        hs.append(h)
    return torch.stack(hs, 1)


@torch.jit.script
def _scan_sin(w: torch.Tensor, h: torch.Tensor, u: torch.Tensor):
    hs = []
    for k in range(w.shape[1]):
        a, z = (w[:, k] + torch.matmul(h, u)).chunk(2, 1)
        h = _mix(h, torch.sin(a), z)
        hs.append(h)
    return torch.stack(hs, 1)


@torch.jit.script
def _scan_leaky(
    w: torch.Tensor, h: torch.Tensor, u: torch.Tensor, slope: float
):
    hs = []
    for k in range(w.shape[1]):
        a, z = (w[:, k] + torch.matmul(h, u)).chunk(2, 1)
        h = _mix(h, torch.nn.functional.leaky_relu(a, slope), z)
        hs.append(h)
    return torch.stack(hs, 1)


def _activation(act):
    """``(name, leaky slope)`` of a ``LiGRU_Layer``'s activation."""
    if isinstance(act, torch.nn.ReLU):
        return "relu", 0.0
    if isinstance(act, torch.nn.Tanh):
        return "tanh", 0.0
    if isinstance(act, torch.nn.LeakyReLU):
        return "leaky_relu", float(act.negative_slope)
    if act is torch.sin:
        return "sin", 0.0
    raise ValueError(f"LiGRU activation {act!r} has no scan function")


def _scan(act, slope, w, h, u):
    if act == "relu":
        return _scan_relu(w, h, u)
    if act == "tanh":
        return _scan_tanh(w, h, u)
    if act == "sin":
        return _scan_sin(w, h, u)
    return _scan_leaky(w, h, u, slope)


class ScannedLiGRULayer(torch.nn.Module):
    """``LiGRU_Layer``'s eval-mode forward with a scripted time loop.

    Arguments
    ---------
    layer : speechbrain.nnet.RNN.LiGRU_Layer
        The layer to compute (kept as the child ``layer``: parameters and
        buffers are shared, not copied).

    Example
    -------
    >>> from speechbrain.nnet.RNN import LiGRU
    >>> net = LiGRU(6, input_shape=(2, 9, 4), bidirectional=True).eval()
    >>> x = torch.rand(3, 11, 4)
    >>> ref = net(x)[0]
    >>> net.rnn[0] = ScannedLiGRULayer(net.rnn[0])
    >>> torch.allclose(net(x)[0], ref, atol=1e-6)
    True
    """

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.hidden_size = layer.hidden_size
        self.bidirectional = layer.bidirectional
        self.act, self.slope = _activation(layer.act)
        self.train(layer.training)

    def forward(self, x, hx: Optional[torch.Tensor] = None):
        """Output of the layer (batch, time, hidden [* 2])."""
        lay = self.layer
        if self.training:
            raise RuntimeError("ScannedLiGRULayer is for inference (eval)")
        if self.bidirectional:
            x = torch.cat([x, x.flip(1)], dim=0)
        w = lay.w(x)
        if lay.normalize:
            w = lay.norm(w.reshape(-1, w.shape[2])).reshape(w.shape)
        if hx is None:
            hx = lay.h_init.expand(w.shape[0], lay.h_init.shape[1])
        # In eval mode the recurrent drop mask is 1 (``drop_mask_te``).
        h = _scan(self.act, self.slope, w, hx, lay.u.weight.t())
        if self.bidirectional:
            h_f, h_b = h.chunk(2, dim=0)
            h = torch.cat([h_f, h_b.flip(1)], dim=2)
        return h


def scan_ligru(module):
    """A copy of ``module`` whose ``LiGRU_Layer`` s are scanned.

    Returns ``(copy, n)``, ``n`` the number of layers swapped; the copy is
    in eval mode and ``module`` is untouched.

    Example
    -------
    >>> from speechbrain.nnet.RNN import LiGRU
    >>> net = LiGRU(6, input_shape=(1, 5, 4), num_layers=2).eval()
    >>> copy_, n = scan_ligru(net)
    >>> n, type(net.rnn[0]).__name__, type(copy_.rnn[0]).__name__
    (2, 'LiGRU_Layer', 'ScannedLiGRULayer')
    """
    module = copy.deepcopy(module).eval()
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LiGRU_Layer):
                setattr(parent, name, ScannedLiGRULayer(child))
                count += 1
    return module, count
