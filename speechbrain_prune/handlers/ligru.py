"""SpeechBrain ``LiGRU``: per-layer modules with an inner normalisation.

Unit ``j`` of a ``LiGRU_Layer`` owns rows ``j`` and ``H + j`` of ``w`` and
``u`` (candidate and update gate), the same entries of the normalisation
over ``2H``, the recurrent column ``j`` of ``u``, column ``j`` of the
``h_init`` and ``drop_masks`` buffers, and the next layer's input columns
``j`` (and ``H + j`` when bidirectional; ``w`` is shared by both
directions). Layers may end with different widths: the module's class is
then switched to :class:`NonUniformLiGRU`, which only changes how the last
states are returned. :class:`LiGRUHandler` is written for every stack of
this shape; ``SLiGRU``'s handler only adds its recurrent norm.

MACs are those of its ``Linear`` layers and norm (``w`` runs once on the
input and its time-flipped copy, ``u`` at every step of each direction),
which torch's layer types count exactly. Its layers run one after the
other, so the activation scorer hooks ``rnn[k]`` directly.

Authors
 * speechbrain-prune team 2026
"""

from typing import Optional

import torch
from speechbrain.nnet.RNN import LiGRU

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


def last_states(layers, x, hx: Optional[torch.Tensor]):
    """Runs ``layers`` one after the other; their last states as a list.

    The forward of a LiGRU-like stack whose layers have different widths,
    where the stack of last states SpeechBrain returns cannot be built.

    Arguments
    ---------
    layers : torch.nn.ModuleList
        Layers that each map ``(batch, time, features)`` to
        ``(batch, time, directions * width)``.
    x : torch.Tensor
        Input of the first layer.
    hx : torch.Tensor, optional
        Initial state of every layer, indexed by layer.

    Returns
    -------
    x : torch.Tensor
        Output of the last layer.
    states : list of torch.Tensor
        One ``(batch, directions * width)`` tensor per layer.

    Example
    -------
    >>> net = LiGRU(4, input_shape=(2, 5, 3), num_layers=2)
    >>> out, states = last_states(net.rnn, torch.rand(2, 5, 3), None)
    >>> out.shape, [s.shape for s in states]
    (torch.Size([2, 5, 4]), [torch.Size([2, 4]), torch.Size([2, 4])])
    """
    states = []
    for i, layer in enumerate(layers):
        x = layer(x, hx=None if hx is None else hx[i])
        states.append(x[:, -1, :])
    return x, states


def same_widths(layers):
    """Whether all ``layers`` have one ``hidden_size``.

    Example
    -------
    >>> net = LiGRU(4, input_shape=(2, 5, 3), num_layers=2)
    >>> same_widths(net.rnn)
    True
    """
    return len({layer.hidden_size for layer in layers}) == 1


class NonUniformLiGRU(LiGRU):
    """``LiGRU`` whose layers may have different widths after pruning.

    SpeechBrain's ``LiGRU`` stacks the last state of every layer into one
    tensor, which needs one width. This subclass returns that state as a
    list (see :func:`last_states`) when the widths differ; everything
    else, parameter names included, is ``LiGRU``'s own, so checkpoints
    load unchanged.

    Example
    -------
    >>> net = LiGRU(4, input_shape=(2, 5, 3), num_layers=2)
    >>> net.__class__ = NonUniformLiGRU
    >>> out, h = net(torch.rand(2, 5, 3))
    >>> out.shape
    torch.Size([2, 5, 4])
    """

    def _forward_ligru(self, x, hx: Optional[torch.Tensor]):
        if same_widths(self.rnn):
            return super()._forward_ligru(x, hx)
        return last_states(self.rnn, x, hx)


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


@register_handler(LiGRU)
class LiGRUHandler(ModuleHandler):
    """One group per layer, sliced in place.

    Written for every stack of layers that share ``w`` between directions
    and gate ``2H`` rows: a subclass names its stack's types
    (:attr:`uniform_type`, :attr:`non_uniform_type`) and the norms over
    ``2H`` of a layer (:meth:`norms`), as :class:`SLiGRUHandler
    <speechbrain_prune.handlers.sligru.SLiGRUHandler>` does.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> rnn = sb.nnet.RNN.LiGRU(8, input_shape=(1, 5, 4), num_layers=2,
    ...                         bidirectional=True).eval()
    >>> model = sb.nnet.containers.Sequential(
    ...     rnn, sb.nnet.linear.Linear(n_neurons=3, input_size=16))
    >>> groups = discover_groups(model, torch.rand(1, 5, 4))
    >>> _ = apply_removals(model, groups, {"0.layer0": [1, 2, 3]})
    >>> rnn.rnn[0].u.weight.shape, rnn.rnn[1].w.weight.shape
    (torch.Size([10, 5]), torch.Size([16, 10]))
    """

    slots = {"producer": (r"hidden\.\d+",), "consumer": (r"input\.\d+",)}
    uniform_type = LiGRU
    non_uniform_type = NonUniformLiGRU

    def norms(self, layer):
        """The layer's norms over the ``2H`` gate rows."""
        return (layer.norm,)

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
        for norm in self.norms(layer):
            _slice_norm(norm, rows, ledger)
        replace_tensor(layer, "h_init", [None, keep], ledger)
        replace_tensor(layer, "drop_masks", [None, keep], ledger)
        layer.hidden_size = len(keep)
        if not same_widths(module.rnn):
            module.__class__ = self.non_uniform_type
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
        for norm in self.norms(layer):
            if isinstance(norm, torch.nn.LayerNorm):
                _mask_layer_norm(norm, keep_pos)

    def param_slices(self, module, member):
        kind, k = slot_of(member)
        layer = module.rnn[k]
        if kind == "input":
            return [(layer.w.weight, 1, channel_index(member, 0))]
        h = layer.hidden_size
        rows = torch.arange(h)[:, None] + h * torch.arange(2)
        out = [(layer.w.weight, 0, rows), (layer.u.weight, 0, rows)]
        out.append((layer.u.weight, 1, rows[:, :1]))
        for norm in self.norms(layer):
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
        uniform = same_widths(module.rnn)
        if uniform and isinstance(module, self.non_uniform_type):
            module.__class__ = self.uniform_type
        module.hidden_size = module.rnn[-1].hidden_size

    def num_layers(self, module):
        return len(module.rnn)

    def widths(self, module):
        dirs = 2 if module.bidirectional else 1
        return module.rnn[0].w.in_features, dirs * module.rnn[-1].hidden_size

    def tap(self, module, member, taps):
        return module.rnn[slot_of(member)[1]], first_argument
