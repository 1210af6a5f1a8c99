"""Which channels and layers go: importance ranked under a budget.

- targets: a fraction of MACs (default), of parameters, or of latency (from
  a measured table, see :mod:`speechbrain_prune.costs.latency`) to remove,
  or a ratio of channels per layer;
- ranking: global across groups (scores optionally normalised per group)
  or uniform (every group loses the same fraction); cost-aware ranking
  orders removals by importance per unit of cost saved;
- constraints: keep at least ``min_keep`` channels and ``min_keep_fraction``
  of each group, keep widths multiple of ``round_to``, leave the groups of
  modules matching ``protect`` untouched;
- depth: whole RNN layers and DNN blocks, ranked by the loss they cost.

One file per job: ``constraints`` (options and their checks),
``selector`` (channels), ``meter`` (what a removal saves), ``depth``
(layers and blocks).

Errors in the options (unknown values, a target outside (0, 1), a pattern
matching no module, a budget the constraints cannot meet) raise
:class:`SelectionError` naming the key to change. :meth:`Selector.check`
finds all of them before any scoring or training time is spent.

Authors
 * speechbrain-prune team 2026
"""

from speechbrain_prune.selection.constraints import (  # noqa: F401
    SelectionError,
    removal_steps,
)
from speechbrain_prune.selection.depth import (  # noqa: F401
    DepthCandidate,
    depth_candidates,
    depth_scores,
    select_depth,
)
from speechbrain_prune.selection.selector import (  # noqa: F401
    Selector,
    normalize_scores,
    select,
)
