"""First-order Taylor importance of group channels (Molchanov et al.).

Removing a channel zeroes every weight coupled to it; to first order the
loss then changes by ``-sum(w * dL/dw)`` over those weights. For a group
channel the sum runs over all its members: the producer's rows (for an
RNN unit: its gate rows in both directions, biases and its recurrent
column), the per-channel norm parameters on the way, and the input columns
of every consumer (for an RNN layer, the next layer's input columns of
both directions). The gradient is that of the recipe's own loss.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.checks import check_finite
from speechbrain_prune.scorers.gradients import loss_and_grads
from speechbrain_prune.scorers.options import one_of
from speechbrain_prune.scorers.registry import register_scorer
from speechbrain_prune.scorers.slices import (
    channel_sum,
    group_slices,
    slice_params,
)

VARIANTS = ("abs", "squared", "abs_of_mean")


@register_scorer("taylor")
class TaylorScorer(Scorer):
    """``|sum(w * dL/dw)|`` over each channel's coupled weights.

    With ``v_b`` the coupled sum on batch ``b`` (combined over the
    channel's parameters by ``aggregate``: ``sum`` / ``mean`` of the signed
    per-parameter sums, or ``max`` of their absolute values):

    - ``abs`` (default): mean over batches of ``|v_b|``;
    - ``squared``: mean of ``v_b ** 2`` (Molchanov et al. 2019, the
      Fisher information of a channel's mask);
    - ``abs_of_mean``: ``|mean of v_b|``, the first-order estimate with
      the gradient averaged over all batches first.

    Arguments
    ---------
    n_batches : int
        Batches used (one forward and backward each).
    variant : str
        ``abs``, ``squared`` or ``abs_of_mean``.
    aggregate : str
        ``sum``, ``mean`` or ``max`` over coupled parameters.
    eval_mode : bool
        Score in eval mode (no dropout); modes are restored afterwards.
    progress : bool
        Show a progress bar.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=4, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=4))
    >>> groups = discover_groups(model, torch.rand(1, 5, 3))
    >>> with torch.no_grad():
    ...     model["1"].w.weight[:, 2] = 0.0  # nothing reads channel 2
    >>> batches = [torch.rand(2, 5, 3) for _ in range(3)]
    >>> loss_fn = lambda x: model(x).pow(2).mean()
    >>> scores = TaylorScorer(n_batches=3, progress=False).score(
    ...     model, groups, batches, loss_fn)
    >>> int(scores["0"].argmin())
    2
    """

    def __init__(
        self,
        n_batches=10,
        variant="abs",
        aggregate="sum",
        eval_mode=True,
        progress=True,
    ):
        super().__init__(n_batches, aggregate, eval_mode, progress)
        self.variant = one_of("variant", variant, VARIANTS)

    def compute(self, root, groups, batches, loss_fn):
        """Accumulates the coupled ``w * dL/dw`` sums over the batches."""
        slices = {g.id: group_slices(root, g) for g in groups}
        params = slice_params(slices)
        acc = {g.id: torch.zeros(g.size, dtype=torch.float64) for g in groups}
        n = 0
        for b, batch in self.batches(batches):
            _, grads = loss_and_grads(loss_fn, batch, params, b)
            values = {
                gid: self._coupled(group_slices_, grads, acc[gid])
                for gid, group_slices_ in slices.items()
            }
            check_finite(values, f"batch {b}")
            for gid, v in values.items():
                if self.variant == "abs":
                    acc[gid] += v.abs()
                elif self.variant == "squared":
                    acc[gid] += v * v
                else:
                    acc[gid] += v
            n += 1
        return {gid: (a / n).abs() for gid, a in acc.items()}

    def _coupled(self, slices, grads, like):
        per_slice = []
        for p, dim, index in slices:
            if not p.requires_grad:
                continue
            wg = p.detach().double() * grads[id(p)].double()
            per_slice.append(channel_sum(wg, dim, index).cpu())
        if not per_slice:
            return torch.zeros_like(like)
        if self.aggregate == "max":
            per_slice = [v.abs() for v in per_slice]
        return self.combine(per_slice)
