"""The training loop: pruning stages inside SpeechBrain's ``Brain.fit``."""

from speechbrain_prune.training.brain import PruningBrain  # noqa: F401
from speechbrain_prune.training.checkpointer import (  # noqa: F401
    PruningCheckpointer,
)
from speechbrain_prune.training.optim import remap_optimizer  # noqa: F401
from speechbrain_prune.training.pruner import Pruner  # noqa: F401
from speechbrain_prune.training.schedule import PruningSchedule  # noqa: F401
