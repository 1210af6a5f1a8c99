"""Layer normalisation over the channel axis (and frequency, for CNNs).

CRDNN's CNN blocks normalise over ``(freq, channels)`` jointly, so a
removed channel changes the mean and variance seen by the kept ones. The
masked reference therefore recomputes the statistics over kept channels
only (:func:`masked_layer_norm`), which is what the sliced layer computes.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb
import torch

from speechbrain_prune.graph.group import THROUGH, Member
from speechbrain_prune.handlers.base import (
    ModuleHandler,
    channel_index,
    positions,
    register_handler,
)
from speechbrain_prune.surgery.ledger import replace_tensor


def _inner(module):
    if isinstance(module, sb.nnet.normalization.LayerNorm):
        return module.norm
    return module


def masked_layer_norm(x, norm, keep_pos):
    """LayerNorm of ``x`` whose statistics use only positions ``keep_pos``.

    Positions outside ``keep_pos`` on the last axis are set to zero in the
    output. This equals ``norm`` applied to ``x[..., keep_pos]`` with the
    matching slice of its weight and bias.

    Arguments
    ---------
    x : torch.Tensor
        Input, normalised over its last ``len(norm.normalized_shape)`` axes.
    norm : torch.nn.LayerNorm
        The unpruned layer.
    keep_pos : torch.Tensor
        Kept positions of the last axis.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> norm = torch.nn.LayerNorm((3, 4))
    >>> x = torch.rand(2, 3, 4)
    >>> keep = torch.tensor([0, 2])
    >>> sliced = torch.nn.functional.layer_norm(x[..., keep], (3, 2))
    >>> out = masked_layer_norm(x, norm, keep)
    >>> torch.allclose(out[..., keep], sliced, atol=1e-6)
    True
    """
    dims = tuple(range(-len(norm.normalized_shape), 0))
    mask = torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device)
    mask[keep_pos] = 1.0
    n = mask.sum()
    for d in dims[:-1]:
        n = n * x.shape[d]
    mean = (x * mask).sum(dim=dims, keepdim=True) / n
    var = (((x - mean) * mask) ** 2).sum(dim=dims, keepdim=True) / n
    out = (x - mean) / torch.sqrt(var + norm.eps)
    if norm.weight is not None:
        out = out * norm.weight
    if norm.bias is not None:
        out = out + norm.bias
    return out * mask


@register_handler(sb.nnet.normalization.LayerNorm, torch.nn.LayerNorm)
class LayerNormHandler(ModuleHandler):
    """Slices the affine parameters on the channel axis; joint statistics.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=5, input_size=3),
    ...     sb.nnet.normalization.LayerNorm(input_size=5),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=5))
    >>> groups = discover_groups(model, torch.rand(1, 4, 3))
    >>> _ = apply_removals(model, groups, {"0": [3]})
    >>> model["1"].norm.normalized_shape
    (4,)
    """

    slots = {"through": ("norm",)}

    def trace(self, ctx, call):
        space = ctx.space(call.args[0])
        if space is not None:
            member = Member(call.name, THROUGH, "norm", space.layout)
            space.group.add(member)
            space.group.min_size = max(
                space.group.min_size, self.min_channels(call.module, member)
            )
        return space

    def min_channels(self, module, member):
        """2 where the norm would see one value per position and channel.

        A layer norm over a single value outputs its bias whatever the
        input (the projection of a CRDNN, a norm after a ``Linear``).
        """
        per_channel = 1
        for n in _inner(module).normalized_shape[:-1]:
            per_channel *= n
        if member.layout is not None:
            per_channel *= member.layout.copies * member.layout.repeat
        return 2 if per_channel < 2 else 1

    def prune(self, module, member, keep, ledger):
        norm = _inner(module)
        pos = positions(member, keep)
        idx = [None] * (len(norm.normalized_shape) - 1) + [pos]
        replace_tensor(norm, "weight", idx, ledger)
        replace_tensor(norm, "bias", idx, ledger)
        norm.normalized_shape = tuple(norm.normalized_shape[:-1]) + (len(pos),)

    def mask(self, module, member, removed):
        norm = _inner(module)
        keep_mask = torch.ones(member.layout.size, dtype=torch.bool)
        keep_mask[removed] = False
        keep_pos = positions(member, torch.nonzero(keep_mask).flatten())

        def hook(mod, args, output):
            return masked_layer_norm(args[0], norm, keep_pos)

        module.register_forward_hook(hook)

    def param_slices(self, module, member):
        norm = _inner(module)
        dim = len(norm.normalized_shape) - 1
        idx = channel_index(member, 0)
        return [
            (p, dim, idx) for p in (norm.weight, norm.bias) if p is not None
        ]

    def slot_size(self, module, member):
        return _inner(module).normalized_shape[-1]
