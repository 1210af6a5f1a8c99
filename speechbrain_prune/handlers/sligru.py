"""SpeechBrain ``SLiGRU``: a LiGRU with a LayerNorm on the recurrent path.

Unit ``j`` of an ``SLiGRU_Layer`` owns rows ``j`` and ``H + j`` of ``w``
and ``u`` (candidate and update gate), the same entries of the
feed-forward norm and of the recurrent ``layer_norm`` (both over ``2H``),
the recurrent column ``j`` of ``u``, column ``j`` of the ``h_init`` and
``drop_masks`` buffers, and the next layer's input columns ``j`` (and
``H + j`` when bidirectional; ``w`` is shared by both directions).

The recurrent ``layer_norm`` normalises all ``2H`` gate pre-activations
jointly at every step, so a removed unit would still move the statistics
of the kept ones: the masked reference computes them over kept entries
only. Layers may end with different widths: the module's class is then
switched to :class:`NonUniformSLiGRU`, which only changes how the last
states are returned.

Costs and scoring need nothing here: its ``Linear`` layers and norms are
counted by torch's layer types (``w`` once on the input and its
time-flipped copy, ``u`` and ``layer_norm`` at every step of each
direction), and its layers run one after the other, so the activation
scorer hooks ``rnn[k]`` directly.

Authors
 * speechbrain-prune team 2026
"""

from typing import Optional

import torch
from speechbrain.nnet.RNN import SLiGRU

from speechbrain_prune.handlers.base import (
    ModuleHandler,
    channel_index,
    first_argument,
    positions,
    register_handler,
)
from speechbrain_prune.handlers.batchnorm import slice_batchnorm
from speechbrain_prune.handlers.layernorm import masked_layer_norm
from speechbrain_prune.handlers.rnn import (
    check_removable,
    slot_of,
    trace_layer_stack,
)
from speechbrain_prune.surgery.ledger import replace_tensor


class NonUniformSLiGRU(SLiGRU):
    """``SLiGRU`` whose layers may have different widths after pruning.

    SpeechBrain's ``SLiGRU`` stacks the last state of every layer into one
    tensor, which needs one width. This subclass returns that state as a
    list (one ``(batch, directions * width)`` tensor per layer) when the
    widths differ; everything else, parameter names included, is
    ``SLiGRU``'s own, so checkpoints load unchanged.

    Example
    -------
    >>> net = SLiGRU(4, input_shape=(2, 5, 3), num_layers=2)
    >>> net.__class__ = NonUniformSLiGRU
    >>> out, h = net(torch.rand(2, 5, 3))
    >>> out.shape
    torch.Size([2, 5, 4])
    """

    def _forward_sligru(self, x, hx: Optional[torch.Tensor]):
        widths = {layer.hidden_size for layer in self.rnn}
        if len(widths) == 1:
            return super()._forward_sligru(x, hx)
        states = []
        for i, layer in enumerate(self.rnn):
            x = layer(x, hx=None if hx is None else hx[i])
            states.append(x[:, -1, :])
        return x, states


def _slice_norm(norm, rows, ledger):
    """Keeps entries ``rows`` of a LayerNorm or BatchNorm over ``2H``."""
    if isinstance(norm, torch.nn.LayerNorm):
        replace_tensor(norm, "weight", [rows], ledger)
        replace_tensor(norm, "bias", [rows], ledger)
        norm.normalized_shape = (len(rows),)
    else:
        slice_batchnorm(norm, rows, ledger)


def _mask_layer_norm(norm, keep_pos):
    """Statistics of ``norm`` over ``keep_pos`` from now on (reference)."""

    def hook(mod, args, output):
        return masked_layer_norm(args[0], norm, keep_pos)

    norm.register_forward_hook(hook)


@register_handler(SLiGRU)
class SLiGRUHandler(ModuleHandler):
    """One group per layer, sliced in place.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> import speechbrain as sb
    >>> rnn = SLiGRU(8, input_shape=(1, 5, 4), num_layers=2,
    ...              bidirectional=True).eval()
    >>> model = sb.nnet.containers.Sequential(
    ...     rnn, sb.nnet.linear.Linear(n_neurons=3, input_size=16))
    >>> groups = discover_groups(model, torch.rand(1, 5, 4))
    >>> _ = apply_removals(model, groups, {"0.layer0": [1, 2, 3]})
    >>> rnn.rnn[0].layer_norm.normalized_shape, rnn.rnn[1].w.weight.shape
    ((10,), torch.Size([16, 10]))
    >>> type(rnn).__name__, model(torch.rand(1, 5, 4)).shape
    ('NonUniformSLiGRU', torch.Size([1, 5, 3]))
    """

    slots = {"producer": (r"hidden\.\d+",), "consumer": (r"input\.\d+",)}

    def trace(self, ctx, call):
        module = call.module
        widths = [layer.hidden_size for layer in module.rnn]
        return trace_layer_stack(
            ctx, call, widths, 2 if module.bidirectional else 1
        )

    def prune(self, module, member, keep, ledger):
        kind, k = slot_of(member)
        layer = module.rnn[k]
        if kind == "input":
            cols = positions(member, keep)
            replace_tensor(layer.w, "weight", [None, cols], ledger)
            layer.w.in_features = layer.input_size = len(cols)
            if k == 0:
                module.fea_dim = float(len(cols))
            return
        h = layer.hidden_size
        rows = torch.cat([keep, h + keep])
        replace_tensor(layer.w, "weight", [rows], ledger)
        replace_tensor(layer.u, "weight", [rows, keep], ledger)
        layer.w.out_features = layer.u.out_features = len(rows)
        layer.u.in_features = len(keep)
        _slice_norm(layer.norm, rows, ledger)
        _slice_norm(layer.layer_norm, rows, ledger)
        replace_tensor(layer, "h_init", [None, keep], ledger)
        replace_tensor(layer, "drop_masks", [None, keep], ledger)
        layer.hidden_size = len(keep)
        if len({lay.hidden_size for lay in module.rnn}) > 1:
            module.__class__ = NonUniformSLiGRU
        module.hidden_size = module.rnn[-1].hidden_size

    def mask(self, module, member, removed):
        kind, k = slot_of(member)
        layer = module.rnn[k]
        with torch.no_grad():
            if kind == "input":
                layer.w.weight[:, positions(member, removed)] = 0.0
                return
            layer.u.weight[:, removed] = 0.0
        h = layer.hidden_size
        keep_mask = torch.ones(h, dtype=torch.bool)
        keep_mask[removed] = False
        keep = torch.nonzero(keep_mask).flatten()
        keep_pos = torch.cat([keep, h + keep])
        _mask_layer_norm(layer.layer_norm, keep_pos)
        if isinstance(layer.norm, torch.nn.LayerNorm):
            _mask_layer_norm(layer.norm, keep_pos)

    def param_slices(self, module, member):
        kind, k = slot_of(member)
        layer = module.rnn[k]
        if kind == "input":
            return [(layer.w.weight, 1, channel_index(member, 0))]
        h = layer.hidden_size
        rows = torch.arange(h)[:, None] + h * torch.arange(2)
        out = [(layer.w.weight, 0, rows), (layer.u.weight, 0, rows)]
        out.append((layer.u.weight, 1, rows[:, :1]))
        for norm in (layer.norm, layer.layer_norm):
            for p in (norm.weight, norm.bias):
                if p is not None and p.requires_grad:
                    out.append((p, 0, rows))
        return out

    def slot_size(self, module, member):
        kind, k = slot_of(member)
        layer = module.rnn[k]
        return layer.hidden_size if kind == "hidden" else layer.w.in_features

    def remove_layer(self, module, index, ledger):
        dirs = 2 if module.bidirectional else 1
        n = len(module.rnn)
        if 0 <= index < n:
            layer = module.rnn[index]
            width_in, width_out = layer.w.in_features, dirs * layer.hidden_size
        else:
            width_in = width_out = 0
        check_removable(n, index, width_in, width_out, module)
        del module.rnn[index]
        module.num_layers = len(module.rnn)
        if len({lay.hidden_size for lay in module.rnn}) == 1 and isinstance(
            module, NonUniformSLiGRU
        ):
            module.__class__ = SLiGRU
        module.hidden_size = module.rnn[-1].hidden_size

    def num_layers(self, module):
        return len(module.rnn)

    def widths(self, module):
        dirs = 2 if module.bidirectional else 1
        return module.rnn[0].w.in_features, dirs * module.rnn[-1].hidden_size

    def tap(self, module, member, taps):
        return module.rnn[slot_of(member)[1]], first_argument
