"""Activation statistics: how much each channel's output varies or fires.

What is observed is what the group's consumers read: the input of every
consumer member (after the norm, activation, pooling and dropout that sit
between producer and consumer), taken with forward pre-hooks while the
recipe's loss runs. Each consumer's input is split into the group's
channels with the member's layout, so a conv channel pools its values over
batch, time and frequency bins, and an RNN unit over batch, time steps and
both directions (columns ``j`` and ``H + j``).

The input of an inner RNN layer is not visible from outside a multi-layer
``torch.nn.LSTM`` / ``GRU``: while scoring, the module is run layer by
layer through one-layer modules that share its parameters (the numerics
are the same), and each layer's input is hooked. A pruned stack
(:class:`StackedRNN`) and ``LiGRU`` (``module.rnn[k]``) already run per
layer.

Padding frames are included in the statistics (the scorer does not see
lengths).

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import warnings

import speechbrain as sb
import torch
from torch.nn.utils.rnn import PackedSequence

from speechbrain_prune.graph.group import Layout
from speechbrain_prune.handlers.rnn import RNNView
from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.checks import check_finite
from speechbrain_prune.scorers.options import non_negative, one_of
from speechbrain_prune.scorers.registry import register_scorer
from speechbrain_prune.surgery.modules import StackedRNN

STATISTICS = ("mean_abs", "apoz", "variance")
_TAPS = {}


def register_tap(*types):
    """Decorator: ``fn(module, member, taps) -> (module to hook, getter)``.

    ``getter(args, kwargs)`` picks the tensor the consumer reads from the
    hooked module's call; the default is the first positional argument.

    Example
    -------
    >>> class Pair(torch.nn.Module):  # reads its channels as 2nd argument
    ...     def forward(self, a, b):
    ...         return a + b
    >>> @register_tap(Pair)
    ... def _pair_tap(module, member, taps):
    ...     return module, lambda args, kwargs: args[1]
    >>> _TAPS[Pair] is _pair_tap
    True
    """

    def decorator(fn):
        for t in types:
            _TAPS[t] = fn
        return fn

    return decorator


def _first_arg(args, kwargs):
    return args[0] if args else next(iter(kwargs.values()), None)


def _layer(member):
    return int(member.slot.split(".")[1])


@register_tap(sb.nnet.RNN.LSTM, sb.nnet.RNN.GRU, sb.nnet.RNN.RNN)
def _rnn_tap(module, member, taps):
    k = _layer(member)
    if k == 0:
        return module, _first_arg
    return taps.rnn_layers(module)[k], _first_arg


@register_tap(sb.nnet.RNN.LiGRU)
def _ligru_tap(module, member, taps):
    return module.rnn[_layer(member)], _first_arg


@register_tap(sb.nnet.RNN.AttentionalRNNDecoder)
def _decoder_tap(module, member, taps):
    def enc_states(args, kwargs):
        return args[1] if len(args) > 1 else kwargs.get("enc_states")

    return module, enc_states


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


class _Taps:
    """Hooks installed for one scoring run, removed on exit."""

    def __init__(self, stack):
        self.stack = stack
        self._layers = {}

    def rnn_layers(self, module):
        """Per-layer modules of a SpeechBrain RNN, swapping it if needed."""
        if id(module) not in self._layers:
            self._layers[id(module)] = self.stack.enter_context(
                _layer_by_layer(module)
            )
        return self._layers[id(module)]


@contextlib.contextmanager
def _layer_by_layer(module):
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


def channel_values(x, layout):
    """``(N, size, k)`` values of each channel in a tensor it is read from.

    Arguments
    ---------
    x : torch.Tensor or PackedSequence
        A consumer's input; the channels are on the last axis, or on the
        last two flattened (``(batch, time, freq, channels)``).
    layout : Layout
        The consumer member's layout.

    Example
    -------
    >>> x = torch.arange(8.0).reshape(1, 2, 4)
    >>> channel_values(x, Layout(2, copies=2))[0].tolist()
    [[0.0, 2.0], [1.0, 3.0]]
    """
    if isinstance(x, PackedSequence):
        x = x.data
    if x.shape[-1] != layout.width and x.dim() >= 3:
        if x.shape[-2] * x.shape[-1] == layout.width:
            x = x.flatten(-2)
    if x.shape[-1] != layout.width:
        raise RuntimeError(
            f"A tensor of width {x.shape[-1]} does not match the layout "
            f"{layout}; rediscover the groups"
        )
    index = layout.index_matrix().to(x.device)
    return x.detach().reshape(-1, layout.width)[:, index]


class _Stats:
    """Running sums of one group's channel values."""

    def __init__(self, size):
        self.n = 0
        self.abs = torch.zeros(size, dtype=torch.float64)
        self.sum = torch.zeros(size, dtype=torch.float64)
        self.sq = torch.zeros(size, dtype=torch.float64)
        self.zeros = torch.zeros(size, dtype=torch.float64)

    def add(self, values, threshold):
        v = values.double()
        self.n += v.shape[0] * v.shape[2]
        self.abs += v.abs().sum((0, 2)).cpu()
        self.sum += v.sum((0, 2)).cpu()
        self.sq += (v * v).sum((0, 2)).cpu()
        self.zeros += (v.abs() <= threshold).double().sum((0, 2)).cpu()

    def value(self, statistic):
        n = max(self.n, 1)
        if statistic == "mean_abs":
            return self.abs / n
        if statistic == "apoz":
            return 1.0 - self.zeros / n
        return (self.sq / n - (self.sum / n) ** 2).clamp(min=0.0)


@register_scorer("activation")
class ActivationScorer(Scorer):
    """Statistics of each channel's values as its consumers read them.

    - ``mean_abs``: mean ``|a|``;
    - ``apoz``: one minus the Average Percentage of Zeros (Hu et al.
      2016), ``|a| <= zero_threshold`` counting as zero; meaningful after
      a ReLU;
    - ``variance``: a channel that never varies carries no information
      (its mean is absorbed by the next layer's bias only in part, so
      it is a ranking signal, not a free removal).

    Higher is more important for all three.

    Arguments
    ---------
    n_batches : int
        Batches used (one forward pass each, no backward).
    statistic : str
        ``mean_abs``, ``apoz`` or ``variance``.
    zero_threshold : float
        ``|a|`` at or below it counts as zero for ``apoz``.
    eval_mode : bool
        Score in eval mode; modes are restored afterwards.
    progress : bool
        Show a progress bar.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> _ = torch.manual_seed(0)
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=4, input_size=3),
    ...     torch.nn.ReLU(),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=4))
    >>> groups = discover_groups(model, torch.rand(1, 5, 3))
    >>> with torch.no_grad():
    ...     model["0"].w.weight[2] = 0.0
    ...     model["0"].w.bias[2] = -1.0  # never fires after the ReLU
    >>> batches = [torch.rand(2, 5, 3) for _ in range(2)]
    >>> scores = ActivationScorer(n_batches=2, statistic="apoz",
    ...     progress=False).score(model, groups, batches,
    ...                           lambda x: model(x).sum())
    >>> scores["0"][2].item()
    0.0
    """

    def __init__(
        self,
        n_batches=10,
        statistic="mean_abs",
        zero_threshold=0.0,
        eval_mode=True,
        progress=True,
    ):
        super().__init__(n_batches, "sum", eval_mode, progress)
        self.statistic = one_of("statistic", statistic, STATISTICS)
        self.zero_threshold = non_negative("zero_threshold", zero_threshold)

    def compute(self, root, groups, batches, loss_fn):
        """Hooks every consumer of every group, then runs the batches."""
        stats = {g.id: _Stats(g.size) for g in groups}
        with contextlib.ExitStack() as stack:
            taps = _Taps(stack)
            for group in groups:
                for member in group.consumers:
                    handle = self._hook(root, group, member, stats, taps)
                    stack.callback(handle.remove)
            for b, batch in self.batches(batches):
                with torch.no_grad():
                    loss_fn(batch)
                values = {
                    gid: s.value(self.statistic) for gid, s in stats.items()
                }
                check_finite(values, f"batch {b}")
        for gid, s in stats.items():
            if s.n == 0:
                raise RuntimeError(
                    f"Group {gid}: no consumer input was seen while the "
                    "loss ran; does loss_fn run the modules of `root`?"
                )
        return {gid: s.value(self.statistic) for gid, s in stats.items()}

    def _hook(self, root, group, member, stats, taps):
        module = root.get_submodule(member.module)
        tap = _default_tap
        for t in type(module).__mro__:
            if t in _TAPS:
                tap = _TAPS[t]
                break
        target, getter = tap(module, member, taps)
        layout = member.layout or Layout(group.size)
        threshold = self.zero_threshold

        def pre_hook(mod, args, kwargs):
            x = getter(args, kwargs)
            if x is None:
                return
            try:
                values = channel_values(x, layout)
            except RuntimeError as e:
                raise RuntimeError(
                    f"Group {group.id}: input of {member.module} "
                    f"({member.slot}): {e}"
                ) from None
            stats[group.id].add(values, threshold)

        return target.register_forward_pre_hook(pre_hook, with_kwargs=True)


def _default_tap(module, member, taps):
    return module, _first_arg
