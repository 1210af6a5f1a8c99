"""Activation statistics: how much each channel's output varies or fires.

What is observed is what the group's consumers read: the input of every
consumer member (after the norm, activation, pooling and dropout that sit
between producer and consumer), taken with forward pre-hooks while the
recipe's loss runs. Each consumer's input is split into the group's
channels with the member's layout, so a conv channel pools its values over
batch, time and frequency bins, and an RNN unit over batch, time steps and
both directions (columns ``j`` and ``H + j``).

Where a consumer reads its channels is its handler's answer
(:meth:`ModuleHandler.tap`): the call's first argument by default, the
encoder states for an attentional decoder, the input of an inner layer for
RNNs (a multi-layer ``torch.nn.LSTM`` / ``GRU`` is run layer by layer
meanwhile, with its own parameters: the numerics are the same).

Padding frames are included in the statistics (the scorer does not see
lengths).

Authors
 * speechbrain-prune team 2026
"""

import contextlib

import torch
from torch.nn.utils.rnn import PackedSequence

from speechbrain_prune.graph.group import Layout
from speechbrain_prune.handlers import handler_for
from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.checks import check_finite
from speechbrain_prune.scorers.options import non_negative, one_of
from speechbrain_prune.scorers.registry import register_scorer

STATISTICS = ("mean_abs", "apoz", "variance")


class Taps:
    """Hooks and temporary changes of one scoring run, undone on exit.

    Handlers' :meth:`ModuleHandler.tap` receive it to enter a context
    manager once per key for the whole run (an RNN swapped for a
    layer-by-layer copy of itself).

    Arguments
    ---------
    stack : contextlib.ExitStack
        Closed when the run ends.

    Example
    -------
    >>> import contextlib
    >>> @contextlib.contextmanager
    ... def swapped():
    ...     print("in")
    ...     yield 42
    ...     print("out")
    >>> with contextlib.ExitStack() as stack:
    ...     taps = Taps(stack)
    ...     taps.enter("k", swapped()), taps.enter("k", swapped())
    in
    (42, 42)
    out
    """

    def __init__(self, stack):
        self.stack = stack
        self._entered = {}

    def enter(self, key, context):
        """``context``'s value, entered on the first call for ``key``."""
        if key not in self._entered:
            self._entered[key] = self.stack.enter_context(context)
        return self._entered[key]


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
            taps = Taps(stack)
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
        target, getter = handler_for(module).tap(module, member, taps)
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
