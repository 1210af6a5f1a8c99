"""Depth candidates: whole RNN layers and blocks a model may lose.

Authors
 * speechbrain-prune team 2026
"""

import copy

import torch

from speechbrain_prune.handlers import handler_for
from speechbrain_prune.surgery.ledger import SliceLedger
from speechbrain_prune.surgery.prune import remove_block, remove_rnn_layer


class DepthCandidate:
    """A whole RNN layer or DNN block that may be removed.

    Arguments
    ---------
    kind : str
        ``rnn_layer`` or ``block``.
    module : str
        The RNN module, or the block, by qualified name.
    layer : int, optional
        The RNN layer.

    Example
    -------
    >>> import speechbrain as sb
    >>> root = torch.nn.ModuleDict(
    ...     {"rnn": sb.nnet.RNN.GRU(4, input_size=4, num_layers=3)})
    >>> cand = DepthCandidate("rnn_layer", "rnn", 1)
    >>> _ = cand.apply(root)
    >>> cand.name, root.rnn.rnn.num_layers
    ('rnn:1', 2)
    """

    def __init__(self, kind, module, layer=None):
        self.kind = kind
        self.module = module
        self.layer = layer

    @property
    def name(self):
        """``module:layer`` for RNN layers, the block's name for blocks."""
        if self.kind == "rnn_layer":
            return f"{self.module}:{self.layer}"
        return self.module

    def apply(self, root, plan=None):
        """Removes it from ``root`` (recorded in ``plan`` when given)."""
        if self.kind == "rnn_layer":
            if plan is not None:
                return plan.remove_rnn_layer(root, self.module, self.layer)
            return remove_rnn_layer(root, self.module, self.layer)
        if plan is not None:
            return plan.remove_block(root, self.module)
        return remove_block(root, self.module)

    def target(self, root):
        """The module that removing it changes (to restore it afterwards)."""
        if self.kind == "rnn_layer":
            return root.get_submodule(self.module)
        parent = self.module.rpartition(".")[0]
        return root.get_submodule(parent) if parent else root

    def __repr__(self):
        return f"DepthCandidate({self.name!r})"


def depth_candidates(root):
    """Every RNN layer and block of ``root`` that may be removed now.

    An RNN layer qualifies when it maps a width to the same width (its
    consumer then reads its input), a block when it holds one
    width-changing layer whose input and output widths agree (with its
    norm, activation, dropout) and is not its container's only block.
    Each candidate is tried on a copy.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> model = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...               rnn_layers=3, rnn_neurons=4, dnn_blocks=2,
    ...               dnn_neurons=8)
    >>> [c.name for c in depth_candidates(model)]
    ['RNN:1', 'RNN:2', 'DNN.block_0', 'DNN.block_1']
    """
    out = []
    for name, module in root.named_modules():
        handler = handler_for(module)
        if handler is None:
            continue
        for k in range(handler.num_layers(module)):
            try:
                handler.remove_layer(copy.deepcopy(module), k, SliceLedger())
            except (ValueError, TypeError):
                continue
            out.append(DepthCandidate("rnn_layer", name, k))
    for name, module in root.named_modules():
        if module is root or not isinstance(module, torch.nn.ModuleDict):
            continue
        if len(module) < 2 or handler_for(module) is not None:
            continue
        for child, block in module.items():
            if len(list(block.children())) < 2:
                continue  # a layer, not a block of layers
            trial = torch.nn.ModuleDict({"p": copy.deepcopy(module)})
            try:
                remove_block(trial, f"p.{child}")
            except (ValueError, TypeError):
                continue
            out.append(DepthCandidate("block", f"{name}.{child}"))
    return out
