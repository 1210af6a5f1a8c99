"""``AttentionalRNNDecoder``: the encoder states it attends to.

The encoder output enters the decoder only through the attention: its
keys (``mlp_enc``, or ``key_linear``) and its values, projected to the
context (``mlp_out``, or ``value_linear``) before they reach the decoder
RNN. Those input columns follow the encoder's last group. The decoder's own
widths are not offered for pruning.

MACs: torch's layers inside (cells, linears) count themselves; the handler
adds the attention's context product, once per decoding step.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb
import torch

from speechbrain_prune.graph.group import CONSUMER, Member
from speechbrain_prune.handlers.base import (
    ModuleHandler,
    channel_index,
    positions,
    register_handler,
)
from speechbrain_prune.surgery.ledger import replace_tensor

ENC_INPUTS = ("mlp_enc", "mlp_out", "key_linear", "value_linear")


def context_macs(attn, args, output):
    """MACs of one attention call's context product (per decoding step).

    ``batch x time x`` the encoder width (content and location
    attention), or the key and value widths (key-value attention).

    Example
    -------
    >>> attn = sb.nnet.attention.ContentBasedAttention(5, 4, 3, 2)
    >>> context_macs(attn, (torch.rand(2, 7, 5),), None)
    70
    """
    enc = args[0]
    if isinstance(attn, sb.nnet.attention.KeyValueAttention):
        width = attn.key_linear.out_features + attn.value_linear.out_features
        return enc.shape[0] * enc.shape[1] * width
    return enc.shape[0] * enc.shape[1] * enc.shape[2]


def _enc_linears(module):
    return [
        getattr(module.attn, n) for n in ENC_INPUTS if hasattr(module.attn, n)
    ]


@register_handler(sb.nnet.RNN.AttentionalRNNDecoder)
class AttentionalDecoderHandler(ModuleHandler):
    """Consumes the encoder states (second argument, ``enc_states``).

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> enc = sb.nnet.linear.Linear(n_neurons=6, input_size=4)
    >>> dec = sb.nnet.RNN.AttentionalRNNDecoder("lstm", "content", 5, 3, 1,
    ...                                         enc_dim=6, input_size=2)
    >>> mods = torch.nn.ModuleDict({"enc": enc, "dec": dec})
    >>> run = lambda m: m.dec(torch.rand(1, 2, 2), m.enc(torch.rand(1, 7, 4)),
    ...                       torch.ones(1))
    >>> groups = discover_groups(mods, run)
    >>> [m.module for m in groups["enc"].members]
    ['enc', 'dec']
    >>> _ = apply_removals(mods, groups, {"enc": [0]})
    >>> dec.attn.mlp_enc.weight.shape
    torch.Size([3, 5])
    """

    slots = {"consumer": ("enc",)}

    def trace(self, ctx, call):
        if len(call.args) > 1:
            enc = call.args[1]
        else:
            enc = call.kwargs.get("enc_states")
        space = ctx.space(enc)
        if space is not None:
            ctx.consume(space, Member(call.name, CONSUMER, "enc", space.layout))
        return None

    def prune(self, module, member, keep, ledger):
        cols = positions(member, keep)
        for lin in _enc_linears(module):
            replace_tensor(lin, "weight", [None, cols], ledger)
            lin.in_features = len(cols)

    def mask(self, module, member, removed):
        with torch.no_grad():
            for lin in _enc_linears(module):
                lin.weight[:, positions(member, removed)] = 0.0

    def param_slices(self, module, member):
        idx = channel_index(member, 0)
        return [(lin.weight, 1, idx) for lin in _enc_linears(module)]

    def slot_size(self, module, member):
        return _enc_linears(module)[0].in_features

    def tap(self, module, member, taps):
        def enc_states(args, kwargs):
            return args[1] if len(args) > 1 else kwargs.get("enc_states")

        return module, enc_states

    def mac_counters(self, module):
        return {"attn": context_macs}
