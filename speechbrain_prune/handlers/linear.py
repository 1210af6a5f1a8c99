"""SpeechBrain ``Linear`` and ``torch.nn.Linear``: neurons and inputs.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb
import torch

from speechbrain_prune.graph.group import CONSUMER, PRODUCER, Member
from speechbrain_prune.handlers.base import (
    ModuleHandler,
    channel_index,
    positions,
    register_handler,
)
from speechbrain_prune.surgery.ledger import replace_tensor


def _inner(module):
    return module.w if isinstance(module, sb.nnet.linear.Linear) else module


@register_handler(sb.nnet.linear.Linear, torch.nn.Linear)
class LinearHandler(ModuleHandler):
    """Output neurons (weight rows, bias) and input columns.

    With ``combine_dims`` a 4-D input ``(batch, time, freq, channels)`` is
    flattened ``f * C + c``: one channel of the input group owns ``freq``
    columns, which the consumer layout records.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> groups = discover_groups(model, torch.rand(1, 4, 3))
    >>> _ = apply_removals(model, groups, {"0": [0, 5]})
    >>> model["1"].w.weight.shape
    torch.Size([2, 4])
    """

    slots = {"producer": ("out",), "consumer": ("in",)}

    def trace(self, ctx, call):
        module, name = call.module, call.name
        x = call.args[0]
        space = ctx.space(x)
        if space is not None:
            layout = space.layout
            if x.dim() == 4 and getattr(module, "combine_dims", False):
                layout = layout.flattened(x.shape[2])
            ctx.consume(space, Member(name, CONSUMER, "in", layout))
        group = ctx.group(name, _inner(module).out_features, "dense")
        group.add(Member(name, PRODUCER, "out"))
        return ctx.output(group)

    def prune(self, module, member, keep, ledger):
        lin = _inner(module)
        if member.slot == "out":
            replace_tensor(lin, "weight", [keep], ledger)
            replace_tensor(lin, "bias", [keep], ledger)
            lin.out_features = len(keep)
        else:
            cols = positions(member, keep)
            replace_tensor(lin, "weight", [None, cols], ledger)
            lin.in_features = len(cols)

    def mask(self, module, member, removed):
        if member.slot == "in":
            with torch.no_grad():
                _inner(module).weight[:, positions(member, removed)] = 0.0

    def param_slices(self, module, member):
        lin = _inner(module)
        if member.slot == "out":
            idx = channel_index(member, lin.out_features)
            out = [(lin.weight, 0, idx)]
            return out + ([(lin.bias, 0, idx)] if lin.bias is not None else [])
        return [(lin.weight, 1, channel_index(member, 0))]

    def slot_size(self, module, member):
        lin = _inner(module)
        return lin.out_features if member.slot == "out" else lin.in_features

    def widths(self, module):
        lin = _inner(module)
        return lin.in_features, lin.out_features
