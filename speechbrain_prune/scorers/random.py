"""Seeded random scores: the baseline every criterion must beat.

Authors
 * speechbrain-prune team 2026
"""

import zlib

import torch

from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.options import integer, positive_int
from speechbrain_prune.scorers.registry import register_scorer


@register_scorer("random")
class RandomScorer(Scorer):
    """Uniform random scores, reproducible from ``seed`` and the group id.

    Each group draws from its own generator, seeded by ``seed`` and a hash
    of its id, so a group's scores do not depend on which other groups are
    scored or in which order.

    Arguments
    ---------
    seed : int
        Seed of the draws.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=3, input_size=2),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=3))
    >>> groups = discover_groups(model, torch.rand(1, 4, 2))
    >>> a = RandomScorer(seed=1).score(model, groups, None, None)
    >>> b = RandomScorer(seed=1).score(model, groups, None, None)
    >>> torch.equal(a["0"], b["0"])
    True
    """

    data_free = True

    def __init__(self, seed=0, n_batches=None):
        # n_batches is accepted and ignored (no data is read), so a recipe
        # can switch between scorers by name with the same options.
        super().__init__(1, "sum", eval_mode=True, progress=False)
        if n_batches is not None:
            positive_int("n_batches", n_batches)
        self.seed = integer("seed", seed)

    def compute(self, root, groups, batches, loss_fn):
        """Draws ``size`` uniform numbers per group."""
        out = {}
        for group in groups:
            key = zlib.crc32(group.id.encode()) + 1_000_003 * self.seed
            g = torch.Generator().manual_seed(key % (2**63))
            out[group.id] = torch.rand(group.size, generator=g)
        return out
