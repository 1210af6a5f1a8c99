"""Structured pruning of SpeechBrain CRDNN speech recognisers.

The data flow, one sub-package each: model -> ``graph`` (dependency groups)
-> ``scorers`` (importance) -> ``selection`` -> ``plan`` -> ``surgery`` ->
training loop (``brain``).
"""

__version__ = "0.1.0"

from speechbrain_prune.costs import count_macs, count_params  # noqa: E402
from speechbrain_prune.costs.setup import LatencySetup  # noqa: E402
from speechbrain_prune.graph import discover_groups  # noqa: E402
from speechbrain_prune.plan import PruningPlan  # noqa: E402
from speechbrain_prune.reference import masked_reference  # noqa: E402
from speechbrain_prune.surgery import apply_removals  # noqa: E402

__all__ = [
    "LatencySetup",
    "PruningPlan",
    "apply_removals",
    "count_macs",
    "count_params",
    "discover_groups",
    "masked_reference",
]

from speechbrain_prune.training import (  # noqa: E402
    Pruner,
    PruningBrain,
    PruningCheckpointer,
    PruningSchedule,
)

__all__ += ["Pruner", "PruningBrain", "PruningCheckpointer", "PruningSchedule"]
