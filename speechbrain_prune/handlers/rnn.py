"""SpeechBrain ``LSTM``, ``GRU`` and ``RNN`` (wrappers of torch's modules).

Hidden unit ``j`` of layer ``k`` owns, in both directions, the gate rows
``g * H + j`` of ``weight_ih_l{k}``, ``weight_hh_l{k}`` and both biases, the
recurrent column ``j`` of ``weight_hh_l{k}``, and the input columns ``j``
(and ``H + j`` when bidirectional) of the next layer or consumer. Each
layer is its own group, so layers may end with different widths: the torch
module is then rebuilt as a :class:`StackedRNN` (see there why).

MACs are counted by torch's layer types (``torch.nn.LSTM`` ...). The
activation scorer reads an inner layer's input by running the module layer
by layer (:class:`LayerwiseRNN`, same numbers); gradient scorers run the
torch module in training mode without dropout (cuDNN has no backward in
eval mode).

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import warnings
from typing import List, Optional

import speechbrain as sb
import torch
from torch.nn.utils.rnn import PackedSequence

from speechbrain_prune.graph.group import (
    CONSUMER,
    PRODUCER,
    Layout,
    Member,
)
from speechbrain_prune.handlers.base import (
    ModuleHandler,
    channel_index,
    first_argument,
    positions,
    register_handler,
)
from speechbrain_prune.surgery.ledger import move_tensor

GATES = {torch.nn.LSTM: 4, torch.nn.GRU: 3, torch.nn.RNN: 1}


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


class RNNView:
    """Per-layer access to a torch RNN or a :class:`StackedRNN`."""

    def __init__(self, inner):
        self.inner = inner
        if isinstance(inner, StackedRNN):
            self.slots = [(m, 0) for m in inner.layers]
            self.dropout = inner.dropout
        else:
            self.slots = [(inner, k) for k in range(inner.num_layers)]
            self.dropout = inner.dropout
        first = self.slots[0][0]
        self.cls = type(first)
        self.gates = GATES[self.cls]
        self.dirs = 2 if first.bidirectional else 1
        self.bias = first.bias
        self.batch_first = first.batch_first
        self.nonlinearity = getattr(first, "nonlinearity", None)

    @property
    def num_layers(self):
        return len(self.slots)

    def names(self):
        """Parameter base names and directions of one layer."""
        bases = ["weight_ih", "weight_hh"]
        if self.bias:
            bases += ["bias_ih", "bias_hh"]
        suffixes = [""] if self.dirs == 1 else ["", "_reverse"]
        return [(b, s) for b in bases for s in suffixes]

    def param(self, k, base, suffix=""):
        module, j = self.slots[k]
        return getattr(module, f"{base}_l{j}{suffix}")

    def hidden(self, k):
        return self.param(k, "weight_hh").shape[1]

    def input_size(self, k):
        return self.param(k, "weight_ih").shape[1]

    def rebuild(self, index_of, ledger, drop_layer=None):
        """A new torch module holding the sliced weights.

        Arguments
        ---------
        index_of : dict
            ``(layer, base) -> [rows, cols]`` index (None = all).
        ledger : SliceLedger
        drop_layer : int, optional
            Layer left out (depth pruning).
        """
        layers = [k for k in range(self.num_layers) if k != drop_layer]
        hidden, inputs = [], []
        for k in layers:
            rows, cols = index_of.get((k, "weight_hh"), [None, None])
            hidden.append(self.hidden(k) if cols is None else len(cols))
            _, icols = index_of.get((k, "weight_ih"), [None, None])
            inputs.append(self.input_size(k) if icols is None else len(icols))
        first = self.slots[0][0]
        kwargs = dict(
            bias=self.bias,
            batch_first=self.batch_first,
            bidirectional=self.dirs == 2,
            device=first.weight_ih_l0.device,
            dtype=first.weight_ih_l0.dtype,
        )
        if self.nonlinearity is not None:
            kwargs["nonlinearity"] = self.nonlinearity
        chained = all(
            inputs[i] == self.dirs * hidden[i - 1]
            for i in range(1, len(layers))
        )

        def build(*args, **kw):
            # Every weight is replaced below; the random initialisation must
            # not shift the global random state (a resumed run would then
            # differ from an uninterrupted one).
            with torch.random.fork_rng(devices=[]):
                return self.cls(*args, **kw)

        if len(set(hidden)) == 1 and chained:
            new = build(
                inputs[0],
                hidden[0],
                num_layers=len(layers),
                dropout=self.dropout if len(layers) > 1 else 0.0,
                **kwargs,
            )
            targets = [(new, i) for i in range(len(layers))]
        else:
            new = StackedRNN(
                [build(i, h, **kwargs) for i, h in zip(inputs, hidden)],
                self.dropout,
            )
            targets = [(m, 0) for m in new.layers]
        for (target, j), k in zip(targets, layers):
            for base, suffix in self.names():
                move_tensor(
                    self.param(k, base, suffix),
                    target,
                    f"{base}_l{j}{suffix}",
                    index_of.get((k, base), [None, None]),
                    ledger,
                )
        new.train(self.inner.training)
        new.flatten_parameters()
        return new


def trace_layer_stack(ctx, call, widths, dirs):
    """Members of a stack of RNN layers (one group per layer).

    The input (flattened ``f * C + c`` when 4-D) feeds layer 0; layer ``k``
    feeds layer ``k + 1`` with ``dirs`` copies of its units; the output
    space is the last layer's.

    Arguments
    ---------
    ctx : the tracing context
    call : Call
        The recorded call of the RNN module.
    widths : list of int
        Hidden units of each layer.
    dirs : int
        1, or 2 when bidirectional.

    Returns
    -------
    Space
        The channel space of the module's output.
    """
    name, x = call.name, call.args[0]
    space = ctx.space(x)
    if space is not None:
        layout = space.layout
        if x.dim() == 4:
            layout = layout.flattened(x.shape[2])
        ctx.consume(space, Member(name, CONSUMER, "input.0", layout))
    group = None
    for k, width in enumerate(widths):
        previous = group
        group = ctx.group(f"{name}.layer{k}", width, "rnn")
        group.add(Member(name, PRODUCER, f"hidden.{k}"))
        if previous is not None:
            layout = Layout(previous.size, dirs)
            previous.add(Member(name, CONSUMER, f"input.{k}", layout))
    return ctx.output(group, dirs)


def slot_of(member):
    """``("hidden" or "input", layer)`` of a layer-stack member's slot."""
    kind, k = member.slot.split(".")
    return kind, int(k)


@register_handler(sb.nnet.RNN.LSTM, sb.nnet.RNN.GRU, sb.nnet.RNN.RNN)
class RNNHandler(ModuleHandler):
    """One group per layer; input columns of layer 0 follow the flatten.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> lstm = sb.nnet.RNN.LSTM(hidden_size=6, input_shape=(1, 5, 4),
    ...                         num_layers=2, bidirectional=True)
    >>> model = sb.nnet.containers.Sequential(
    ...     lstm, sb.nnet.linear.Linear(n_neurons=3, input_size=12))
    >>> groups = discover_groups(model, torch.rand(1, 5, 4))
    >>> [g.id for g in groups.prunable()]
    ['0.layer0', '0.layer1']
    >>> _ = apply_removals(model, groups, {"0.layer1": [0, 1]})
    >>> type(lstm.rnn).__name__, model(torch.rand(1, 5, 4)).shape
    ('StackedRNN', torch.Size([1, 5, 3]))
    """

    slots = {"producer": (r"hidden\.\d+",), "consumer": (r"input\.\d+",)}

    def trace(self, ctx, call):
        view = RNNView(call.module.rnn)
        widths = [view.hidden(k) for k in range(view.num_layers)]
        return trace_layer_stack(ctx, call, widths, view.dirs)

    def prune(self, module, member, keep, ledger):
        view = RNNView(module.rnn)
        kind, k = slot_of(member)
        index_of = {}
        if kind == "hidden":
            h = view.hidden(k)
            rows = torch.cat([g * h + keep for g in range(view.gates)])
            index_of[(k, "weight_ih")] = [rows, None]
            index_of[(k, "weight_hh")] = [rows, keep]
            index_of[(k, "bias_ih")] = [rows]
            index_of[(k, "bias_hh")] = [rows]
        else:
            index_of[(k, "weight_ih")] = [None, positions(member, keep)]
        module.rnn = view.rebuild(index_of, ledger)

    def mask(self, module, member, removed):
        view = RNNView(module.rnn)
        kind, k = slot_of(member)
        base = "weight_hh" if kind == "hidden" else "weight_ih"
        cols = removed if kind == "hidden" else positions(member, removed)
        with torch.no_grad():
            for suffix in {s for _, s in view.names()}:
                view.param(k, base, suffix)[:, cols] = 0.0

    def param_slices(self, module, member):
        view = RNNView(module.rnn)
        kind, k = slot_of(member)
        suffixes = {s for _, s in view.names()}
        if kind == "input":
            idx = channel_index(member, 0)
            return [(view.param(k, "weight_ih", s), 1, idx) for s in suffixes]
        h = view.hidden(k)
        rows = torch.arange(h)[:, None] + h * torch.arange(view.gates)
        out = []
        for base, s in view.names():
            out.append((view.param(k, base, s), 0, rows))
        for s in suffixes:
            out.append((view.param(k, "weight_hh", s), 1, rows[:, :1]))
        return out

    def slot_size(self, module, member):
        view = RNNView(module.rnn)
        kind, k = slot_of(member)
        return view.hidden(k) if kind == "hidden" else view.input_size(k)

    def remove_layer(self, module, index, ledger):
        view = RNNView(module.rnn)
        width_in = width_out = 0
        if 0 <= index < view.num_layers:
            width_in = view.input_size(index)
            width_out = view.dirs * view.hidden(index)
        check_removable(view.num_layers, index, width_in, width_out, module)
        module.rnn = view.rebuild({}, ledger, drop_layer=index)

    def num_layers(self, module):
        return RNNView(module.rnn).num_layers

    def widths(self, module):
        view = RNNView(module.rnn)
        return view.input_size(0), view.dirs * view.hidden(view.num_layers - 1)

    def tap(self, module, member, taps):
        kind, k = slot_of(member)
        if k == 0:
            return module, first_argument
        layers = taps.enter(module, layer_by_layer(module))
        return layers[k], first_argument

    def scoring_overrides(self, module):
        # A torch RNN differs between modes by its inter-layer dropout
        # alone, so training mode without dropout computes what eval does.
        out = []
        for m in module.rnn.modules():
            if isinstance(m, torch.nn.RNNBase):
                out += [(m, "dropout", 0.0), (m, "training", True)]
        return out


def check_removable(num_layers, index, width_in, width_out, module):
    """Raises ValueError unless layer ``index`` of a stack can be removed."""
    name = type(module).__name__
    if num_layers < 2:
        raise ValueError(f"{name} has one layer left; it cannot lose it")
    if not 0 <= index < num_layers:
        raise ValueError(f"{name} has no layer {index} (0..{num_layers - 1})")
    if width_in != width_out:
        raise ValueError(
            f"Layer {index} of {name} maps width {width_in} to {width_out}; "
            "only a layer whose input and output widths agree can be removed "
            "(its consumer then reads its input unchanged)"
        )


class LayerwiseRNN(StackedRNN):
    """A multi-layer torch RNN run as one-layer modules sharing its weights.

    A :class:`StackedRNN` whose layers use the wrapped module's own
    Parameters, so each layer's output can be hooked. Returns what the
    wrapped module returns (output, and final states stacked over layers),
    so the SpeechBrain wrapper around it is unaware.

    Arguments
    ---------
    rnn : torch.nn.RNNBase
        Multi-layer ``LSTM``, ``GRU`` or ``RNN``.

    Example
    -------
    >>> rnn = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True,
    ...                     bidirectional=True)
    >>> x = torch.rand(2, 5, 3)
    >>> (y, (h, c)), (y2, (h2, c2)) = rnn(x), LayerwiseRNN(rnn)(x)
    >>> torch.allclose(y, y2, atol=1e-6), torch.allclose(c, c2, atol=1e-6)
    (True, True)
    """

    def __init__(self, rnn):
        view = RNNView(rnn)
        kwargs = dict(
            bias=view.bias,
            batch_first=view.batch_first,
            bidirectional=view.dirs == 2,
            device="meta",
        )
        if view.nonlinearity is not None:
            kwargs["nonlinearity"] = view.nonlinearity
        layers = []
        for k in range(view.num_layers):
            layer = view.cls(view.input_size(k), view.hidden(k), **kwargs)
            for base, suffix in view.names():
                setattr(
                    layer, f"{base}_l0{suffix}", view.param(k, base, suffix)
                )
            layers.append(layer)
        super().__init__(layers, view.dropout)
        self.dirs = view.dirs
        self.is_lstm = view.cls is torch.nn.LSTM
        self.train(rnn.training)

    def flatten_parameters(self):
        """Nothing to do: the wrapped module's weights are used as they are."""

    def forward(self, x, hx=None):
        """Runs the layers; ``hx`` as the wrapped module takes it."""
        per_layer = None
        if hx is not None:
            per_layer = [self._state(hx, i) for i in range(self.num_layers)]
        with warnings.catch_warnings():
            # cuDNN: the shared weights sit in the wrapped module's flat
            # buffer, not in one chunk per layer. Harmless here.
            warnings.filterwarnings(
                "ignore", message="RNN module weights are not part"
            )
            x, states = super().forward(x, per_layer)
        if self.is_lstm:
            return x, tuple(torch.cat([s[j] for s in states]) for j in (0, 1))
        return x, torch.cat(states)

    def _state(self, hx, i):
        part = slice(i * self.dirs, (i + 1) * self.dirs)
        if isinstance(hx, tuple):
            return tuple(h[part] for h in hx)
        return hx[part]


@contextlib.contextmanager
def layer_by_layer(module):
    """Per-layer modules of a SpeechBrain RNN, run layer by layer meanwhile.

    A multi-layer torch module is swapped for a :class:`LayerwiseRNN`
    sharing its Parameters (put back on exit); a :class:`StackedRNN`
    already runs per layer.

    Example
    -------
    >>> net = sb.nnet.RNN.GRU(4, input_size=3, num_layers=2)
    >>> with layer_by_layer(net) as layers:
    ...     len(layers), type(net.rnn).__name__
    (2, 'LayerwiseRNN')
    >>> type(net.rnn).__name__
    'GRU'
    """
    inner = module.rnn
    if isinstance(inner, StackedRNN):
        yield list(inner.layers)
        return
    wrapper = LayerwiseRNN(inner)
    module.rnn = wrapper
    try:
        yield list(wrapper.layers)
    finally:
        module.rnn = inner
