"""The channel ``Selector``: importance scores ranked under a budget.

Given per-channel scores of the prunable groups, a :class:`Selector`
chooses the channels to remove so that a target is met with the least
damage (see :mod:`speechbrain_prune.selection` for the targets, rankings
and constraints). The cost of a channel depends on the widths of its
neighbours (a conv channel costs less once the next conv is narrower), so
a global selection runs in rounds: a greedy pass with the current
per-channel costs, then an exact count on a pruned copy
(:class:`~speechbrain_prune.selection.meter.CostMeter`), then costs
measured again at the new widths, until the target is met. Per-channel
costs at fixed widths add up to at least the true saving, so the count
approaches the target from below and the last round overshoots it by at
most one removal step (``round_to`` channels of one group).

Authors
 * speechbrain-prune team 2026
"""

import fnmatch
import heapq
import math
import zlib

import torch

from speechbrain_prune.costs.latency import LatencyModel
from speechbrain_prune.scorers.base import ScoreError
from speechbrain_prune.selection.constraints import (
    COSTS,
    MODES,
    NORMALIZATIONS,
    TARGET_TYPES,
    SelectionError,
    removal_steps,
    require_fraction,
    require_one_of,
    require_whole,
)
from speechbrain_prune.selection.meter import CostMeter


def normalize_scores(scores, how):
    """Per-group normalisation so that groups compare in a global ranking.

    ``none``; ``mean``, ``max``: divide by the group's mean or maximum;
    ``l2``: divide by the group's L2 norm.

    Example
    -------
    >>> normalize_scores(torch.tensor([1.0, 3.0]), "max").tolist()
    [0.3333333432674408, 1.0]
    """
    s = scores
    if how == "none":
        return s
    if how == "mean":
        d = s.mean()
    elif how == "max":
        d = s.abs().max()
    else:
        d = s.norm()
    return s / d if d > 0 else s


class Selector:
    """Chooses the channels to remove from scores, under a budget.

    All arguments are plain values, so a recipe declares it in YAML::

        pruning_selector: !new:speechbrain_prune.selection.Selector
            target: 0.3
            target_type: macs
            round_to: 8
            protect: ["*.CNN.block_0.*"]

    Arguments
    ---------
    target : float or dict
        Fraction to remove, in (0, 1), of MACs, parameters or latency; for
        ``target_type="layer_ratio"`` the fraction of channels each group
        loses, or a dict ``pattern -> fraction`` (first matching pattern
        wins; groups no pattern matches keep their width).
    target_type : str
        ``macs`` (default), ``params``, ``latency`` or ``layer_ratio``.
    normalization : str
        Per-group score normalisation before a global ranking: ``none``,
        ``mean``, ``max`` or ``l2``.
    mode : str
        ``global`` (one ranking across groups) or ``uniform`` (every group
        loses the same fraction, chosen to meet the target).
    cost_aware : bool
        Rank by importance per unit of cost saved, rather than importance.
    cost : str, optional
        What a removal saves for the cost-aware ranking: ``macs``,
        ``params`` or ``latency``; by default the ``target_type``.
    min_keep : int
        Channels every group keeps at least.
    min_keep_fraction : float
        Fraction of its channels every group keeps at least.
    round_to : int or str
        Kept widths are multiples of it (GPU-friendly shapes), or, with
        ``"table"``, only widths the latency table measured (latency is
        not monotonic in width: a table measured on both sides of a step,
        :func:`~speechbrain_prune.costs.latency.table_widths`, lets the
        selection land on the fast side with exact measured costs instead
        of a line interpolated across the step). Groups without a curve in
        the table keep their width then. A selector without a latency
        table (a template for a Pruner's stages) refuses it when selecting.
    protect : list of str
        ``fnmatch`` patterns; a group whose id or any member module matches
        is left untouched (a protected module keeps all its shapes). Each
        pattern must match some module or group.
    latency_table : str or dict, optional
        A table from ``python -m speechbrain_prune.costs.latency`` (path or
        loaded), for ``latency`` targets or costs.
    seed : int
        Breaks ties between equal scores, reproducibly.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=8, input_size=4),
    ...     sb.nnet.linear.Linear(n_neurons=8, input_size=8),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=8))
    >>> x = torch.rand(1, 10, 4)
    >>> groups = discover_groups(model, x)
    >>> scores = {"0": torch.arange(8.0), "1": torch.arange(8.0) + 4}
    >>> selector = Selector(target=0.4, round_to=2)
    >>> removed = selector.select(model, groups, scores, run=x)
    >>> {gid: r.tolist() for gid, r in removed.items()}
    {'0': [0, 1, 2, 3]}
    >>> selector.report["base"], round(selector.report["achieved"], 3)
    (1120.0, 0.429)
    """

    def __init__(
        self,
        target=0.3,
        target_type="macs",
        normalization="none",
        mode="global",
        cost_aware=True,
        cost=None,
        min_keep=1,
        min_keep_fraction=0.0,
        round_to=1,
        protect=(),
        latency_table=None,
        seed=0,
    ):
        require_one_of("target_type", target_type, TARGET_TYPES)
        require_one_of("normalization", normalization, NORMALIZATIONS)
        require_one_of("mode", mode, MODES)
        #: Whether ``cost`` was given (not derived from ``target_type``).
        self.cost_given = cost is not None
        cost = cost or (target_type if target_type in COSTS else "macs")
        require_one_of("cost", cost, COSTS)
        if target_type == "layer_ratio":
            ratios = target if isinstance(target, dict) else {"*": target}
            for pattern, r in ratios.items():
                require_fraction("target", r, low_inclusive=True)
        else:
            require_fraction("target", target)
        require_whole("min_keep", min_keep, 1)
        require_fraction(
            "min_keep_fraction", min_keep_fraction, low_inclusive=True
        )
        if round_to == "table":
            # Without a latency target or cost, a template of options (a
            # Pruner's stages bring the table): checked when selecting.
            if latency_table is not None and "latency" not in (
                target_type,
                cost,
            ):
                raise SelectionError(
                    "`round_to: table` keeps the widths of the latency "
                    "table: it needs a latency target or cost"
                )
        else:
            require_whole("round_to", round_to, 1)
        require_whole("seed", seed, None)
        if not isinstance(cost_aware, bool):
            raise SelectionError(
                f"`cost_aware` must be true or false, got {cost_aware!r}"
            )
        if isinstance(protect, str):
            protect = [protect]  # one pattern, not its characters
        protect = list(protect or ())
        if not all(isinstance(p, str) and p for p in protect):
            raise SelectionError(
                f"`protect` must be a list of module name patterns, got "
                f"{protect!r}"
            )
        if "latency" in (target_type, cost) and latency_table is None:
            raise SelectionError(
                "A latency target or cost needs `latency_table` (build one "
                "with `python -m speechbrain_prune.costs.latency`)"
            )
        self.target = target
        self.target_type = target_type
        self.normalization = normalization
        self.mode = mode
        self.cost_aware = bool(cost_aware)
        self.cost = cost
        self.min_keep = int(min_keep)
        self.min_keep_fraction = float(min_keep_fraction)
        self.round_to = round_to if round_to == "table" else int(round_to)
        self.protect = list(protect or ())
        self.latency_table = latency_table
        self.seed = int(seed)
        self._latency = None
        self.report = {}

    def options(self):
        """Its options, without ``target`` and ``latency_table``: what a
        :class:`~speechbrain_prune.training.Pruner` declared with
        ``selection: !new:speechbrain_prune.selection.Selector`` builds
        each stage's selector from.

        Example
        -------
        >>> Selector(round_to=8, protect="*.block_0.*").options()["protect"]
        ['*.block_0.*']
        """
        return {
            "target_type": self.target_type,
            "normalization": self.normalization,
            "mode": self.mode,
            "cost_aware": self.cost_aware,
            "cost": self.cost,
            "min_keep": self.min_keep,
            "min_keep_fraction": self.min_keep_fraction,
            "round_to": self.round_to,
            "protect": list(self.protect),
            "seed": self.seed,
        }

    # Checks -----------------------------------------------------------------
    def candidates(self, root, groups):
        """``group id -> allowed removal counts`` of the groups that may go.

        Raises :class:`SelectionError` for a ``protect`` pattern matching
        no module and no group.
        """
        names = set(groups)
        for g in groups.values():
            names.update(g.modules())
        if root is not None:
            names.update(n for n, _ in root.named_modules() if n)
        for pattern in self.protect:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise SelectionError(
                    f"`protect` pattern {pattern!r} matches no module; "
                    f"names look like {sorted(names)[:4]}"
                )
        out = {}
        for g in groups.values():
            if not g.prunable or self._protected(g):
                continue
            # A layer may need more than one channel (``min_size``).
            floor = max(self.min_keep, getattr(g, "min_size", 1))
            if self.round_to == "table":
                steps = self._table_steps(g, floor)
            else:
                steps = removal_steps(
                    g.size, floor, self.min_keep_fraction, self.round_to
                )
            if steps:
                out[g.id] = steps
        return out

    def _table_steps(self, group, floor):
        """Removal counts that leave a width the latency table measured."""
        if self.latency_table is None:
            raise SelectionError(
                "`round_to: table` keeps the widths of the latency table: "
                "it needs a latency target or cost and its `latency_table`"
            )
        latency = self._latency_model()
        if group.id not in latency.curves:
            return []
        # As removal_steps: 0.07 * 100 is 7.000000000000001 in floats.
        least = math.ceil(self.min_keep_fraction * group.size - 1e-9)
        floor = max(floor, least)
        widths = [
            w for w in latency.widths(group.id) if floor <= w < group.size
        ]
        return sorted(group.size - w for w in widths)

    def _latency_model(self):
        if self._latency is None:
            self._latency = LatencyModel.from_any(self.latency_table)
        return self._latency

    def _protected(self, group):
        names = [group.id] + group.modules()
        return any(
            fnmatch.fnmatchcase(n, p) for p in self.protect for n in names
        )

    def check(self, root, groups, run=None):
        """Raises :class:`SelectionError` now if the options cannot work.

        Call it right after discovering the groups, before any scoring or
        training: it checks the ``protect`` patterns, that some group may
        lose channels, and that removing everything the constraints allow
        reaches the target.

        Returns
        -------
        float
            The largest fraction the constraints allow to remove (1.0 for
            ``layer_ratio``).
        """
        cands = self.candidates(root, groups)
        if not cands:
            raise SelectionError(
                "No group may lose a channel under the constraints; relax "
                "`protect`, `min_keep`, `min_keep_fraction` or `round_to`"
            )
        if self.target_type == "layer_ratio":
            self._ratios(groups, cands)
            return 1.0
        meter = self._meter(root, groups, run, None, None)
        most = {gid: steps[-1] for gid, steps in cands.items()}
        best = meter.saved_fraction(most)
        if best < self.target:
            raise SelectionError(
                f"Cannot remove {self.target:.1%} of the {self.target_type} "
                f"(`target`): the constraints allow at most {best:.1%}; "
                "lower `target` or relax `min_keep`, `min_keep_fraction`, "
                "`round_to` or `protect`"
            )
        return best

    # Selection ----------------------------------------------------------------
    def select(self, root, groups, scores, run=None, costs=None, base=None):
        """Channels to remove, per group.

        Arguments
        ---------
        root : torch.nn.Module or None
            The traced root; needed for exact counts (without it, costs
            are taken as additive: ``costs`` and ``base`` are required).
        groups : GroupSet
            Its groups.
        scores : dict
            ``group id -> importance per channel`` (a scorer's output).
        run : callable or torch.Tensor, optional
            One forward pass, for MAC counts.
        costs : dict, optional
            ``group id -> {"macs": ..., "params": ...}`` per channel at the
            current widths (:func:`group_costs`), to skip measuring them.
        base : float, optional
            Total MACs / parameters of the model (without ``root``).

        Returns
        -------
        dict
            ``group id -> sorted LongTensor of removed channels`` (groups
            that lose nothing are left out). ``self.report`` holds the
            base, achieved fraction and number of rounds.
        """
        cands = self.candidates(root, groups)
        if not cands:
            raise SelectionError(
                "No group may lose a channel under the constraints; relax "
                "`protect`, `min_keep`, `min_keep_fraction` or `round_to`"
            )
        orders, values = self._rank(groups, scores, cands)
        if self.target_type == "layer_ratio":
            counts = self._ratios(groups, cands)
            self.report = {"target_type": "layer_ratio", "rounds": 0}
            return _removals(orders, counts)
        meter = self._meter(root, groups, run, costs, base)
        if self.mode == "uniform":
            counts = self._uniform(cands, meter)
        else:
            counts = self._global(cands, orders, values, meter)
        return _removals(orders, counts)

    def _rank(self, groups, scores, cands):
        """Channel order (least important first) and normalised scores."""
        orders, values = {}, {}
        for gid in cands:
            if gid not in scores:
                raise SelectionError(
                    f"No score for group {gid}; score the same groups that "
                    "are selected from (rediscover after surgery)"
                )
            s = torch.as_tensor(scores[gid]).detach().double().cpu()
            if s.shape != (groups[gid].size,):
                raise SelectionError(
                    f"Group {gid} has {groups[gid].size} channels, its "
                    f"scores have shape {tuple(s.shape)}"
                )
            bad = ~torch.isfinite(s)
            if bad.any():
                raise ScoreError(
                    f"Group {gid}: score of channel "
                    f"{int(torch.nonzero(bad)[0])} is not finite; the "
                    "selection stops"
                )
            s = normalize_scores(s, self.normalization)
            g = torch.Generator().manual_seed(self.seed + _stable_hash(gid))
            perm = torch.randperm(len(s), generator=g)
            order = perm[torch.sort(s[perm], stable=True).indices]
            orders[gid] = order
            values[gid] = s[order]
        return orders, values

    def _ratios(self, groups, cands):
        ratios = (
            self.target if isinstance(self.target, dict) else {"*": self.target}
        )
        matched = set()
        counts = {}
        for gid, steps in cands.items():
            names = [gid] + groups[gid].modules()
            for pattern, r in ratios.items():
                if any(fnmatch.fnmatchcase(n, pattern) for n in names):
                    matched.add(pattern)
                    want = r * groups[gid].size
                    options = [0] + steps
                    counts[gid] = min(options, key=lambda c: abs(c - want))
                    break
        for pattern in ratios:
            if pattern not in matched and pattern != "*":
                raise SelectionError(
                    f"`target` pattern {pattern!r} matches no prunable, "
                    "unprotected group"
                )
        return counts

    def _meter(self, root, groups, run, costs, base):
        if self.target_type == "latency" or self.cost == "latency":
            self._latency_model()
        return CostMeter(self, root, groups, run, costs, base, self._latency)

    def _uniform(self, cands, meter):
        """Smallest common fraction of every group that meets the target."""
        most = {gid: steps[-1] for gid, steps in cands.items()}

        def counts_at(f):
            out = {}
            for gid, steps in cands.items():
                size = meter.groups[gid].size
                allowed = [c for c in steps if c <= f * size + 1e-9]
                out[gid] = allowed[-1] if allowed else 0
            return out

        points = sorted(
            {
                c / meter.groups[gid].size
                for gid, st in cands.items()
                for c in st
            }
        )
        lo, hi = 0, len(points) - 1
        if meter.saved_fraction(counts_at(points[hi])) < self.target:
            raise self._infeasible(meter.saved_fraction(most))
        while lo < hi:
            mid = (lo + hi) // 2
            if meter.saved_fraction(counts_at(points[mid])) >= self.target:
                hi = mid
            else:
                lo = mid + 1
        counts = counts_at(points[lo])
        self.report = meter.report(counts, rounds=1)
        return counts

    def _global(self, cands, orders, values, meter):
        """Greedy rounds with re-measured costs until the target is met."""
        counts = {gid: 0 for gid in cands}
        taken = {gid: 0 for gid in cands}  # steps taken per group
        saved = 0.0
        rounds = 0
        while saved < self.target:
            rounds += 1
            rank_cost = meter.unit_costs(counts, self.cost)
            target_cost = meter.unit_costs(counts, self.target_type)
            gap = (self.target - saved) * meter.base
            heap = []
            args = (cands, taken, counts, values, rank_cost, target_cost)
            for gid in cands:
                self._push(heap, gid, *args)
            estimate = 0.0
            moved = False
            while estimate < gap and heap:
                *_, gid = heapq.heappop(heap)
                new = cands[gid][taken[gid]]
                estimate += (new - counts[gid]) * target_cost[gid]
                counts[gid] = new
                taken[gid] += 1
                moved = True
                self._push(heap, gid, *args)
            saved = meter.saved_fraction(counts)
            if not moved:
                raise self._infeasible(saved)
        self._trim(cands, counts, taken, values, meter, rank_cost)
        self.report = meter.report(counts, rounds)
        return {gid: c for gid, c in counts.items() if c}

    def _trim(self, cands, counts, taken, values, meter, unit):
        """Gives back last steps the target does not need, most valuable
        first (the greedy may overshoot by more than the last step)."""

        def value(gid):
            lo = cands[gid][taken[gid] - 2] if taken[gid] > 1 else 0
            importance = float(values[gid][lo : counts[gid]].sum())
            saving = (counts[gid] - lo) * max(unit[gid], 1e-30)
            return importance / saving if self.cost_aware else importance

        for gid in sorted(
            (g for g in counts if counts[g]), key=value, reverse=True
        ):
            previous = cands[gid][taken[gid] - 2] if taken[gid] > 1 else 0
            trial = dict(counts, **{gid: previous})
            if meter.saved_fraction(trial) >= self.target:
                counts[gid] = previous
                taken[gid] -= 1

    def _push(self, heap, gid, cands, taken, counts, values, unit, toward):
        """Queues the group's next step. ``unit``: per-channel saving that
        ranks (``cost``), ``toward``: per-channel saving of the target."""
        if taken[gid] >= len(cands[gid]) or toward[gid] <= 0:
            return  # nothing left, or it would not bring the target closer
        lo, hi = counts[gid], cands[gid][taken[gid]]
        importance = float(values[gid][lo:hi].sum())
        saving = (hi - lo) * unit[gid]
        tier = 0
        if not self.cost_aware:
            priority = importance / (hi - lo)
        elif saving > 0:
            priority = importance / saving
        else:  # saves nothing by the ranking cost: only once all else went
            tier, priority = 1, importance / (hi - lo)
        heapq.heappush(heap, (tier, priority, _stable_hash(gid), gid))

    def _infeasible(self, best):
        return SelectionError(
            f"Cannot remove {self.target:.1%} of the {self.target_type} "
            f"(`target`): the constraints allow at most {best:.1%}; lower "
            "`target` or relax `min_keep`, `min_keep_fraction`, `round_to` "
            "or `protect`"
        )


def _removals(orders, counts):
    out = {}
    for gid, c in counts.items():
        if c:
            out[gid] = orders[gid][:c].sort().values
    return out


def _stable_hash(text):
    return zlib.crc32(str(text).encode()) % (2**31)


def select(
    groups,
    scores,
    costs=None,
    target=0.3,
    target_type="macs",
    normalization="none",
    mode="global",
    cost_aware=True,
    cost=None,
    min_keep=1,
    min_keep_fraction=0.0,
    round_to=1,
    protect=(),
    base_macs=None,
    seed=0,
    root=None,
    run=None,
    latency_table=None,
):
    """Functional form of :class:`Selector` (same options).

    With ``root`` and ``run`` the target is checked by exact counts on
    pruned copies; without them, ``costs`` (per channel, from
    :func:`group_costs`) are taken as additive and ``base_macs`` is the
    model's total (MACs, or parameters for ``target_type="params"``).

    Returns
    -------
    dict
        ``group id -> sorted LongTensor of removed channels``.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=4, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=4))
    >>> x = torch.rand(1, 5, 3)
    >>> groups = discover_groups(model, x)
    >>> from speechbrain_prune.costs import count_macs, group_costs
    >>> costs = group_costs(model, groups, x)
    >>> removed = select(groups, {"0": torch.tensor([3.0, 1.0, 2.0, 4.0])},
    ...                  costs, target=0.25, base_macs=count_macs(model, run=x))
    >>> removed["0"].tolist()
    [1]
    """
    selector = Selector(
        target=target,
        target_type=target_type,
        normalization=normalization,
        mode=mode,
        cost_aware=cost_aware,
        cost=cost,
        min_keep=min_keep,
        min_keep_fraction=min_keep_fraction,
        round_to=round_to,
        protect=protect,
        latency_table=latency_table,
        seed=seed,
    )
    return selector.select(
        root, groups, scores, run=run, costs=costs, base=base_macs
    )
