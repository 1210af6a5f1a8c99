"""SpeechBrain ``Conv1d`` / ``Conv2d``: output channels and input channels.

SpeechBrain convolutions take channels last: ``(batch, time, channels)``
and ``(batch, time, freq, channels)``, so the channel axis of their input
and output is the last one, like every other layer here.

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


@register_handler(sb.nnet.CNN.Conv1d, sb.nnet.CNN.Conv2d)
class ConvHandler(ModuleHandler):
    """Slices ``conv.weight`` rows (out) and columns (in), and the bias.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> conv = sb.nnet.CNN.Conv2d(4, (3, 3), input_shape=(1, 8, 6, 2))
    >>> model = sb.nnet.containers.Sequential(conv, torch.nn.ReLU(),
    ...     sb.nnet.CNN.Conv2d(3, (3, 3), in_channels=4))
    >>> groups = discover_groups(model, torch.rand(1, 8, 6, 2))
    >>> _ = apply_removals(model, groups, {"0": [1, 2]})
    >>> conv.conv.weight.shape
    torch.Size([2, 2, 3, 3])
    """

    slots = {"producer": ("out",), "consumer": ("in",)}

    def trace(self, ctx, call):
        module, name = call.module, call.name
        x = call.args[0]
        reasons = self._unsupported(module)
        space = ctx.space(x)
        if space is not None:
            if reasons:
                space.group.block(f"{name}: {reasons}")
            else:
                ctx.consume(space, Member(name, CONSUMER, "in", space.layout))
        group = ctx.group(name, module.conv.out_channels, "conv")
        if reasons:
            group.block(f"{name}: {reasons}")
        member = Member(name, PRODUCER, "out")
        group.add(member)
        group.min_size = max(group.min_size, self.min_channels(module, member))
        return ctx.output(group)

    def min_channels(self, module, member):
        if member.slot == "out" and getattr(module, "unsqueeze", False):
            # SpeechBrain squeezes a 1-channel output of such a conv away.
            return 2
        return 1

    @staticmethod
    def _unsupported(module):
        if module.conv.groups != 1:
            return "grouped convolution"
        if getattr(module, "skip_transpose", False):
            return "channels-first input (skip_transpose=True)"
        if torch.nn.utils.parametrize.is_parametrized(module.conv):
            return "parametrized weight (weight norm)"
        return ""

    def prune(self, module, member, keep, ledger):
        conv = module.conv
        if member.slot == "out":
            replace_tensor(conv, "weight", [keep], ledger)
            replace_tensor(conv, "bias", [keep], ledger)
            conv.out_channels = len(keep)
        else:
            replace_tensor(
                conv, "weight", [None, positions(member, keep)], ledger
            )
            conv.in_channels = len(member.layout.positions(keep))
            module.in_channels = conv.in_channels

    def mask(self, module, member, removed):
        if member.slot == "in":
            with torch.no_grad():
                module.conv.weight[:, positions(member, removed)] = 0.0

    def param_slices(self, module, member):
        conv = module.conv
        if member.slot == "out":
            idx = channel_index(member, conv.out_channels)
            out = [(conv.weight, 0, idx)]
            return out + (
                [(conv.bias, 0, idx)] if conv.bias is not None else []
            )
        return [(conv.weight, 1, channel_index(member, 0))]

    def slot_size(self, module, member):
        if member.slot == "out":
            return module.conv.out_channels
        return module.conv.in_channels

    def widths(self, module):
        return module.conv.in_channels, module.conv.out_channels
