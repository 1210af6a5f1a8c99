"""What a removal saves: exact counts on pruned copies, a table, or sums.

Authors
 * speechbrain-prune team 2026
"""

import copy

import torch

from speechbrain_prune.costs.macs import count_cost, count_params, group_costs
from speechbrain_prune.selection.constraints import SelectionError
from speechbrain_prune.surgery.prune import apply_removals


class CostMeter:
    """Measures what a removal saves: exact counts, a table, or additive.

    Built by a :class:`~speechbrain_prune.selection.Selector`, which passes
    itself (``selector``: its ``target_type`` and ``cost``).
    """

    def __init__(self, selector, root, groups, run, costs, base, latency):
        self.sel = selector
        self.root = root
        self.groups = groups
        self.run = run
        self.latency = latency
        self.kind = selector.target_type
        self._costs0 = costs
        if root is None and self.kind != "latency":
            if costs is None or base is None:
                raise SelectionError(
                    "Without the model, selection needs per-channel `costs` "
                    "and the model's total (`base`)"
                )
        if "macs" in (self.kind, selector.cost) and root is not None:
            if run is None:
                raise SelectionError(
                    "MAC targets and costs need `run` (one forward pass, or "
                    "an example input) to count MACs"
                )
        if self.kind == "latency":
            self.base = latency.base
        elif base is not None:
            self.base = float(base)
        else:
            self.base = float(self._measure(self.root))
        self._cache = {}
        self._unit_cache = {}

    def _measure(self, model):
        return count_cost(model, self.kind, self.run)

    def _pruned(self, counts):
        """A pruned copy of the root and its groups (cached per counts)."""
        removals = {
            gid: torch.arange(self.groups[gid].size - c, self.groups[gid].size)
            for gid, c in counts.items()
            if c
        }
        clone = copy.deepcopy(self.root)
        groups = copy.deepcopy(self.groups)
        apply_removals(clone, groups, removals)
        return clone, groups

    def saved_fraction(self, counts):
        """Fraction of the base that removing ``counts`` channels saves."""
        key = tuple(sorted((g, c) for g, c in counts.items() if c))
        if key in self._cache:
            return self._cache[key]
        if self.kind == "latency":
            widths = {
                gid: self.groups[gid].size - c for gid, c in counts.items()
            }
            after = self.latency.estimate(widths)
        elif self.root is None:
            unit = self._costs0
            after = self.base - sum(
                c * unit[gid][self.kind] for gid, c in counts.items()
            )
        else:
            after = self._measure(self._pruned(counts)[0])
        value = (self.base - after) / self.base
        self._cache[key] = value
        return value

    def unit_costs(self, counts, what):
        """Per-channel saving (``what``) of each group after ``counts``."""
        if what == "latency":
            return {
                gid: self.latency.channel_cost(
                    gid, self.groups[gid].size - counts.get(gid, 0)
                )
                for gid in counts
            }
        if self.root is None or (
            not any(counts.values()) and self._costs0 is not None
        ):
            return {gid: self._costs0[gid][what] for gid in counts}
        key = (what, tuple(sorted((g, c) for g, c in counts.items() if c)))
        if key not in self._unit_cache:
            clone, groups = self._pruned(counts)
            if what == "macs":
                measured = group_costs(clone, groups, self.run)
                value = {gid: measured[gid]["macs"] for gid in counts}
            else:
                value = {gid: param_cost(clone, groups[gid]) for gid in counts}
            self._unit_cache[key] = value
        return self._unit_cache[key]

    def report(self, counts, rounds):
        achieved = self.saved_fraction(counts)
        return {
            "target_type": self.kind,
            "target": self.sel.target,
            "base": self.base,
            "after": self.base * (1 - achieved),
            "achieved": achieved,
            "rounds": rounds,
        }


def param_cost(root, group):
    """Parameters one channel of ``group`` holds (all its members); 0 for a
    group at the fewest channels its layers keep (``min_size``)."""
    if group.size <= max(1, getattr(group, "min_size", 1)):
        return 0
    clone = copy.deepcopy(root)
    g = copy.deepcopy(group)
    before = count_params(clone)
    apply_removals(clone, {g.id: g}, {g.id: [group.size - 1]})
    return before - count_params(clone)
