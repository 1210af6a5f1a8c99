"""The scorer interface: what every importance criterion shares.

A scorer gives every channel of every prunable group a non-negative
importance (higher = keep). It sees the model only through the recipe's
own loss, ``loss_fn(batch) -> scalar``, so a CTC recipe, a seq2seq recipe
with attention and CTC+NLL, or anything else scores unchanged; use
:func:`brain_loss_fn` to build it from a SpeechBrain ``Brain``.

Scoring leaves the model as it found it: train/eval modes, parameter
values, buffers (BatchNorm running statistics, LiGRU drop masks) and
``.grad`` are restored afterwards.

Authors
 * speechbrain-prune team 2026
"""

import itertools

from tqdm.auto import tqdm

from speechbrain_prune.scorers.checks import ScoreError, check_finite
from speechbrain_prune.scorers.distributed import (
    all_reduce_scores,
    is_main_rank,
)
from speechbrain_prune.scorers.options import flag, one_of, positive_int
from speechbrain_prune.scorers.slices import AGGREGATES, aggregate_slices
from speechbrain_prune.scorers.state import restored, scoring_state

# Imported from here by other packages (selection); their homes are
# checks.py and state.py.
__all__ = ["AGGREGATES", "ScoreError", "Scorer", "restored", "scoring_state"]


class Scorer:
    """Base class: turns batches and a loss into per-channel importance.

    Subclasses implement :meth:`compute`; :meth:`score` wraps it with the
    bookkeeping every scorer needs (modes and buffers restored, finite
    check, averaging across DDP ranks).

    Arguments
    ---------
    n_batches : int
        Batches consumed at most (fewer if the iterable ends first).
    aggregate : str
        How the scores of a channel's coupled parameters combine into one
        group score: ``sum``, ``mean`` or ``max``.
    eval_mode : bool
        Score with every module in eval mode (no dropout, BatchNorm uses
        its running statistics), which makes scores reproducible. Modes
        are restored afterwards either way.
    progress : bool
        Show a progress bar over the scoring batches.

    Example
    -------
    >>> import torch
    >>> class Ones(Scorer):
    ...     def compute(self, root, groups, batches, loss_fn):
    ...         return {g.id: torch.ones(g.size) for g in groups}
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=3, input_size=2),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=3))
    >>> groups = discover_groups(model, torch.rand(1, 4, 2))
    >>> Ones().score(model, groups, [], None)
    {'0': tensor([1., 1., 1.], dtype=torch.float64)}
    """

    #: True for scorers that read no data (magnitude, random).
    data_free = False

    def __init__(
        self, n_batches=10, aggregate="sum", eval_mode=True, progress=True
    ):
        self.n_batches = positive_int("n_batches", n_batches)
        self.aggregate = one_of("aggregate", aggregate, AGGREGATES)
        self.eval_mode = flag("eval_mode", eval_mode)
        self.progress = flag("progress", progress)

    def compute(self, root, groups, batches, loss_fn):
        """``group id -> scores``; ``groups`` are the prunable ones."""
        raise NotImplementedError

    def score(self, root, groups, batches, loss_fn):
        """Importance of every channel of every prunable group.

        Arguments
        ---------
        root : torch.nn.Module
            The traced root (model, or ``ModuleDict`` of a recipe's modules)
            whose modules ``loss_fn`` runs.
        groups : GroupSet
            Groups of ``root``; only ``groups.prunable()`` are scored.
        batches : iterable
            Training batches, as ``loss_fn`` takes them.
        loss_fn : callable
            ``loss_fn(batch) -> scalar loss`` through the current modules.

        Returns
        -------
        dict
            ``group id -> float64 tensor (group size)``, higher = keep. With
            ``torch.distributed`` initialised, averaged over ranks.
        """
        prunable = (
            groups.prunable()
            if hasattr(groups, "prunable")
            else [g for g in groups if g.prunable]
        )
        with scoring_state(root, self.eval_mode):
            scores = self.compute(root, prunable, batches, loss_fn)
        scores = {g.id: scores[g.id].double() for g in prunable}
        check_finite(scores, "before averaging over ranks")
        scores = all_reduce_scores(scores)
        check_finite(scores, "after averaging over ranks")
        return scores

    # Helpers for subclasses ------------------------------------------------
    def batches(self, batches, desc=None):
        """``(index, batch)`` for at most ``n_batches``, with progress bar."""
        if batches is None:
            raise ValueError(f"{type(self).__name__} needs batches to score on")
        total = self.n_batches
        if hasattr(batches, "__len__"):
            total = min(total, len(batches))
        it = itertools.islice(iter(batches), self.n_batches)
        seen = False
        for n, batch in enumerate(
            tqdm(
                it,
                total=total,
                desc=desc or f"{type(self).__name__} scoring",
                disable=not self.progress or not is_main_rank(),
                leave=False,
            )
        ):
            seen = True
            yield n, batch
        if not seen:
            raise ValueError(
                f"{type(self).__name__} got no batches to score on"
            )

    def combine(self, per_slice):
        """Aggregates a list of ``(size,)`` tensors with ``aggregate``."""
        return aggregate_slices(per_slice, self.aggregate)

    def __repr__(self):
        args = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if k != "progress"
        )
        return f"{type(self).__name__}({args})"
