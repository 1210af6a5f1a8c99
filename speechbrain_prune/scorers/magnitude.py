"""Weight magnitude: the L1 / L2 norm of each channel's coupled weights.

A baseline that reads no data: cheap, and blind to what the loss needs.

Authors
 * speechbrain-prune team 2026
"""

from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.options import flag, one_of, positive_int
from speechbrain_prune.scorers.registry import register_scorer
from speechbrain_prune.scorers.slices import channel_sum, group_slices


@register_scorer("magnitude")
class MagnitudeScorer(Scorer):
    """Norm of all weights coupled to a channel (every member's slice).

    Per parameter, the channel's entries give ``sum |w| ** norm``; these
    combine by ``aggregate`` and, for ``norm=2``, a square root follows.
    ``producer_only`` restricts it to the producer's own rows (the classic
    filter-norm criterion).

    Arguments
    ---------
    norm : int
        1 (L1) or 2 (L2).
    aggregate : str
        ``sum``, ``mean`` or ``max`` over coupled parameters.
    producer_only : bool
        Only the producing layer's weights count.

    Example
    -------
    >>> import speechbrain as sb
    >>> import torch
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=3, input_size=2),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=3))
    >>> groups = discover_groups(model, torch.rand(1, 4, 2))
    >>> with torch.no_grad():
    ...     for p in model.parameters():
    ...         _ = p.fill_(1.0)
    ...     model["0"].w.weight[1] = 0.0
    >>> MagnitudeScorer(norm=1).score(model, groups, None, None)["0"]
    tensor([5., 3., 5.], dtype=torch.float64)
    """

    data_free = True

    def __init__(
        self, norm=1, aggregate="sum", producer_only=False, n_batches=None
    ):
        # n_batches is accepted and ignored (no data is read), so a recipe
        # can switch between scorers by name with the same options.
        super().__init__(1, aggregate, eval_mode=True, progress=False)
        if n_batches is not None:
            positive_int("n_batches", n_batches)
        self.norm = one_of("norm", norm, (1, 2))
        self.producer_only = flag("producer_only", producer_only)

    def compute(self, root, groups, batches, loss_fn):
        """Norms per channel; ``batches`` and ``loss_fn`` are not used."""
        out = {}
        for group in groups:
            if self.producer_only:
                group = _producer_view(group)
            per_slice = []
            for p, dim, index in group_slices(root, group):
                w = p.detach().double().abs() ** self.norm
                per_slice.append(channel_sum(w, dim, index).cpu())
            s = self.combine(per_slice)
            out[group.id] = s.sqrt() if self.norm == 2 else s
        return out

    def __repr__(self):
        return (
            f"MagnitudeScorer(n_batches=1, aggregate={self.aggregate!r}, "
            f"eval_mode=True, norm={self.norm})"
        )


def _producer_view(group):
    import copy

    view = copy.copy(group)
    view.members = [m for m in group.members if m.role == "producer"]
    return view
