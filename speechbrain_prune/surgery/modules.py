"""Modules that surgery builds when a stock module cannot hold the result.

Each is defined with the handler of its layer type, which builds it:
:class:`StackedRNN` in :mod:`speechbrain_prune.handlers.rnn`,
:class:`NonUniformLiGRU` in :mod:`speechbrain_prune.handlers.ligru`. They
are importable from here for the code that writes or loads pruned models
(export).

Authors
 * speechbrain-prune team 2026
"""

from speechbrain_prune.handlers.ligru import NonUniformLiGRU
from speechbrain_prune.handlers.rnn import StackedRNN

__all__ = ["NonUniformLiGRU", "StackedRNN"]
