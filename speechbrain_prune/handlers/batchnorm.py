"""SpeechBrain ``BatchNorm1d``: per-channel affine and running statistics.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb

from speechbrain_prune.graph.group import THROUGH, Member
from speechbrain_prune.handlers.base import (
    ModuleHandler,
    channel_index,
    positions,
    register_handler,
)
from speechbrain_prune.surgery.ledger import replace_tensor

BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def slice_batchnorm(bn, pos, ledger):
    """Keeps channels ``pos`` of a ``torch.nn.BatchNorm*`` layer."""
    for name in BN_TENSORS:
        replace_tensor(bn, name, [pos], ledger)
    bn.num_features = len(pos)


@register_handler(sb.nnet.normalization.BatchNorm1d)
class BatchNormHandler(ModuleHandler):
    """Normalisation is per channel, so slicing is exact.

    Example
    -------
    >>> import torch
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=5, input_size=3),
    ...     sb.nnet.normalization.BatchNorm1d(input_size=5),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=5)).eval()
    >>> groups = discover_groups(model, torch.rand(2, 4, 3))
    >>> _ = apply_removals(model, groups, {"0": [0, 1]})
    >>> model["1"].norm.running_var.shape
    torch.Size([3])
    """

    slots = {"through": ("norm",)}

    def trace(self, ctx, call):
        space = ctx.space(call.args[0])
        if space is not None:
            space.group.add(Member(call.name, THROUGH, "norm", space.layout))
        return space

    def prune(self, module, member, keep, ledger):
        slice_batchnorm(module.norm, positions(member, keep), ledger)

    def param_slices(self, module, member):
        idx = channel_index(member, 0)
        bn = module.norm
        return [(p, 0, idx) for p in (bn.weight, bn.bias) if p is not None]

    def slot_size(self, module, member):
        return module.norm.num_features
