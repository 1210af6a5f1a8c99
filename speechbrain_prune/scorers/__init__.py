"""Importance scorers: how much each channel of each group matters.

Every scorer turns the recipe's own loss and a few training batches into
one score per channel of every prunable group (higher = keep). Declare one
in a recipe's YAML like any SpeechBrain object::

    pruning_scorer: !new:speechbrain_prune.scorers.TaylorScorer
        n_batches: 32
        variant: squared

or by name with :func:`get_scorer`. A new criterion is one small file
whose class subclasses :class:`Scorer` and is decorated with
:func:`register_scorer`.
"""

# Importing the scorer modules fills the registry.
from speechbrain_prune.scorers.activation import ActivationScorer
from speechbrain_prune.scorers.base import Scorer
from speechbrain_prune.scorers.brain import brain_loss_fn
from speechbrain_prune.scorers.checks import ScoreError
from speechbrain_prune.scorers.distributed import all_reduce_scores
from speechbrain_prune.scorers.magnitude import MagnitudeScorer
from speechbrain_prune.scorers.random import RandomScorer
from speechbrain_prune.scorers.registry import (
    get_scorer,
    known_scorers,
    register_scorer,
)
from speechbrain_prune.scorers.sensitivity import (
    AblationScorer,
    FisherScorer,
)
from speechbrain_prune.scorers.slices import group_slices
from speechbrain_prune.scorers.taylor import TaylorScorer

__all__ = [
    "AblationScorer",
    "ActivationScorer",
    "FisherScorer",
    "MagnitudeScorer",
    "RandomScorer",
    "ScoreError",
    "Scorer",
    "TaylorScorer",
    "all_reduce_scores",
    "brain_loss_fn",
    "get_scorer",
    "group_slices",
    "known_scorers",
    "register_scorer",
]
