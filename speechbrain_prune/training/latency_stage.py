"""Latency-targeted stages: measured tables and end-to-end checks, cached.

A stage with ``target_type: latency`` removes a fraction of the *unpruned*
model's latency under stated conditions (:class:`LatencySetup`). For
each such stage, on the device it states:

1. the current model's latency is timed side by side with the unpruned
   architecture (kept from when the Brain was built), giving the ratio
   already achieved;
2. a latency table of the current model is measured (each group alone
   narrowed), and the selection meets the rest of the target on it;
3. the chosen candidate is built and timed side by side with the unpruned
   architecture (end to end, not the table's additive estimate); while it
   misses the target by more than ``tolerance``, the fraction asked of the
   selection grows by the shortfall and the selection runs again.

Everything measured is written to ``latency_<conditions>_stage<k>.json``
(conditions: :attr:`LatencySetup.key`, the table's widths included)
in the save folder before the surgery, so a run resumed after a kill makes
the same decision without timing again. Under DDP only the main process
times: it measures the table, which every rank then reads from that file,
and while every rank runs the selection in step (scores and losses are
averaged over the ranks), it times each candidate and sends the result to
the others.

Authors
 * speechbrain-prune team 2026
"""

import json
import logging
import os

import speechbrain as sb
import torch

from speechbrain_prune.costs.latency import (
    LatencyModel,
    build_latency_table,
    latency_ratio,
)
from speechbrain_prune.selection import SelectionError
from speechbrain_prune.selection.joint import PruningChoice
from speechbrain_prune.utils import copy_module

logger = logging.getLogger(__name__)


class LatencyStage:
    """Measures, for one stage, what the latency selection needs.

    Arguments
    ---------
    setup : LatencySetup
        The conditions.
    dense : torch.nn.Module
        The unpruned architecture (weights do not matter), on any device.
    folder : str, optional
        Where the measurements are cached (the save folder).
    tolerance : float
        How far above the requested ratio the measured one may end.
    tries : int
        Selections at most, each on a table corrected by the last try.
    """

    def __init__(self, setup, dense, folder=None, tolerance=0.02, tries=3):
        self.setup = setup
        self.dense = dense
        self.folder = folder
        self.tolerance = float(tolerance)
        self.tries = int(tries)
        self.memory = {}  # the cache without a folder
        self._dense_on_device = None  # copied when first timed

    def path(self, index, rerun=0):
        """The cache file of stage ``index`` (``"dense"``: of the unpruned
        model, measured before training when stage 1 counts another
        measure).

        ``rerun``: how many times the stage was done before (a target
        raised on resume runs it again, on the model it already pruned:
        that run measures its own model, in its own file).

        Example
        -------
        >>> from speechbrain_prune.costs.setup import LatencySetup
        >>> stage = LatencyStage(LatencySetup(), None, "save")
        >>> os.path.basename(stage.path(1))
        'latency_cpu-2threads-b1-10s-float32-f0.75_0.5_0.25_stage2.json'
        >>> stage.path(1, rerun=1).endswith("_stage2-rerun1.json")
        True
        """
        return self._path(self.setup.key, index, rerun)

    def _path(self, key, index, rerun):
        if self.folder is None:
            return None
        which = index if isinstance(index, str) else f"stage{index + 1}"
        if rerun:
            which += f"-rerun{rerun}"
        return os.path.join(self.folder, f"latency_{key}_{which}.json")

    def load(self, index, rerun=0):
        """What stage ``index`` measured before, or ``{}``."""
        path = self.path(index, rerun)
        if path is None:
            return dict(self.memory.get(_key(index, rerun), {}))
        if not os.path.exists(path):
            older = self._path(self.setup.timing_key, index, rerun)
            if os.path.exists(older):
                logger.info(
                    f"Latency cache {os.path.basename(older)} does not say "
                    "which widths its table measured (fractions, "
                    f"width_steps): timed again into {os.path.basename(path)}"
                )
            return {}
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            logger.warning(f"Unreadable latency cache {path}: timed again")
            return {}

    def save(self, index, cache, rerun=0):
        path = self.path(index, rerun)
        if path is None:
            self.memory[_key(index, rerun)] = dict(cache)
            return
        if not sb.utils.distributed.if_main_process():
            return  # every rank holds the same; the main one writes it
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, path)

    def _timed(self, model, run, rounds=1):
        """Latency of ``model`` over the unpruned architecture's."""
        s = self.setup
        if self._dense_on_device is None:
            self._dense_on_device = copy_module(self.dense).to(s.device)
        return latency_ratio(
            self._dense_on_device,
            model,
            run,
            s.repeats,
            s.warmup,
            s.rounds * rounds,
            measure=s.timer,
        )

    def _check(self, root, choice, run, goal):
        """The end-to-end ratio of ``root`` with ``choice`` applied: timed
        on the main process, the same number on every rank (the selection
        runs on every rank in step: its scores and losses are averaged
        over the ranks)."""
        measured = None
        if sb.utils.distributed.if_main_process():
            candidate = copy_module(root).to(self.setup.device)
            choice.apply(candidate)
            with self.setup.timing():
                measured = self._timed(candidate, run)
                if measured <= goal + self.tolerance:
                    # Accept on a second, longer timing only: a lucky
                    # round must not decide.
                    measured = self._timed(candidate, run, rounds=2)
        return sb.utils.distributed.ddp_broadcast(measured)

    def measure(self, index, root, groups, run, rerun=0, widths=None):
        """Current ratio and latency table of ``root`` (cached per stage
        and run of the stage).

        Arguments
        ---------
        index : int
            The stage.
        root : torch.nn.Module
            A copy of the current modules (moved to the setup's device).
        groups : GroupSet
            Their groups.
        run : callable
            The timed forward, ``setup.runner(...)``.
        rerun : int
            Times the stage was done before (see :meth:`path`).
        widths : dict, optional
            ``group id -> widths`` the table measures instead of the
            setup's (see
            :func:`~speechbrain_prune.costs.latency.build_latency_table`).
        """
        cache = self.load(index, rerun)
        if "table" in cache:
            return cache
        device_root = root.to(self.setup.device)
        with self.setup.timing():
            current = self._timed(device_root, run)
            table = build_latency_table(
                device_root,
                groups,
                run,
                fractions=self.setup.fractions,
                repeats=self.setup.repeats,
                warmup=self.setup.warmup,
                depth=True,
                rounds=self.setup.rounds,
                steps=self.setup.width_steps,
                widths=widths,
                measure=self.setup.timer,
                progress=sb.utils.distributed.if_main_process(),
            )
        table["conditions"] = self.setup.describe()
        cache = {"current_ratio": current, "table": table}
        self.save(index, cache, rerun)
        return cache

    def choose(self, index, root, groups, run, select, target, rerun=0):
        """What to remove so that the latency ratio falls to ``1 - target``.

        Arguments
        ---------
        index : int
            The stage.
        root : torch.nn.Module
            A copy of the current modules on the setup's device.
        groups : GroupSet
            Their groups.
        run : callable
            The timed forward.
        select : callable
            ``select(fraction, table) -> PruningChoice``: the selection
            meeting ``fraction`` of the current model's latency on the
            table (channels, and whole layers where the pruner allows).
        target : float
            Cumulative fraction of the unpruned latency to remove.
        rerun : int
            Times the stage was done before (see :meth:`path`).

        Returns
        -------
        choice : PruningChoice
            What to remove (nothing when already met).
        cache : dict
            What was measured: ``current_ratio``, ``table``, ``fraction``,
            ``selection_table`` (the table the choice was made on) and
            ``measured_ratio`` (of the chosen candidate).

        A candidate that misses the goal teaches the next try: the
        curves of the groups it cut are scaled by how much of their
        estimated saving the candidate really showed (layer removals,
        measured whole, are taken as right; groups it left whole keep
        their curves), so an optimistic curve makes those channels
        dearer and the next try turns to other groups, removes more, or
        a layer more. A candidate that meets the goal is timed
        once more, with twice the rounds, before it is accepted.
        """
        cache = self.measure(index, root, groups, run, rerun)
        if cache.get("target", target) != target:
            # Decided for another target (changed on resume before the
            # surgery): the measured model is this one, the decision not.
            cache = {k: cache[k] for k in ("current_ratio", "table")}
        cache["target"] = target
        goal = 1.0 - target
        current = cache["current_ratio"]
        if current <= goal:
            cache.setdefault("fraction", 0.0)
            cache.setdefault("measured_ratio", current)
            self.save(index, cache, rerun)
            return PruningChoice(), cache
        if "fraction" in cache:  # decided before a restart
            self.save(index, cache, rerun)  # for this target (older: none)
            table = cache.get("selection_table", cache["table"])
            return select(cache["fraction"], table), cache
        fraction = min(1.0 - goal / current, 0.999)
        table = cache["table"]
        chosen = None
        for attempt in range(self.tries):
            try:
                choice = select(fraction, table)
            except SelectionError:
                if chosen is None:
                    raise
                logger.warning(
                    f"Latency stage {index + 1}: the constraints allow no "
                    "more than the previous try"
                )
                break
            last = choice
            measured = self._check(root, choice, run, goal)
            logger.info(
                f"Latency stage {index + 1}, try {attempt + 1}: "
                f"{choice.describe()}, measured x{measured:.3f} of "
                f"unpruned (goal x{goal:.3f})"
            )
            if chosen is None or measured < chosen[3]:
                chosen = (choice, fraction, table, measured)
            if measured <= goal + self.tolerance:
                chosen = (choice, fraction, table, measured)
                break
            table = _learned(table, choice, current, measured, goal)
        else:
            logger.warning(
                f"Latency stage {index + 1}: after {self.tries} selections "
                f"the best candidate runs at x{chosen[3]:.3f} of the "
                f"unpruned latency on {self.setup.describe()}, above the "
                f"goal x{goal:.3f}; the table's estimate and the "
                "end-to-end time disagree (noise, or steps in latency "
                "against width)"
            )
        choice, fraction, table, measured = chosen
        if choice is not last:
            # An earlier try won: select it again, so that what the
            # selection reports (the mixes it ranked) is the chosen one's.
            choice = select(fraction, table)
        cache["fraction"] = fraction
        cache["selection_table"] = table
        cache["measured_ratio"] = measured
        self.save(index, cache, rerun)
        return choice, cache


def _key(index, rerun):
    """The in-memory cache key: the stage's index for its first run (as
    callers seeding ``memory``, the benchmark, expect), with the run
    after."""
    return (index, rerun) if rerun else index


def _learned(table, choice, current, measured, goal):
    """``table`` with the curves of the groups a candidate cut scaled by
    what it showed.

    The candidate was chosen to save ``1 - goal / current`` of the
    current latency; its layer removals are taken at the table's word and
    the rest of what it saved is set against what its channels were
    estimated to save. The shortfall is the cut groups' doing: each of
    their curves' distance from the full width is multiplied by that
    efficiency (at least 0.05), and the curves of groups it left whole
    are kept, so the next try turns to them. When the candidate also
    removed layers (the ids of its groups are the renumbered model's) or
    no cut group has a curve in ``table``, every curve is scaled.

    Example
    -------
    >>> table = {"base_seconds": 1.0, "depth": {}, "groups": {
    ...     "a": {"widths": [2, 4], "seconds": [0.6, 1.0]},
    ...     "b": {"widths": [2, 4], "seconds": [0.6, 1.0]}}}
    >>> cut_a = PruningChoice([], None, {"a": [0, 1]})
    >>> out = _learned(table, cut_a, 1.0, 0.8, 0.6)
    >>> out["groups"]["a"]["seconds"], out["groups"]["b"]["seconds"]
    ([0.8, 1.0], [0.6, 1.0])
    """
    latency = LatencyModel(table)
    depth = sum(latency.depth_saving(c.name) for c in choice.depth)
    depth /= latency.base
    asked = 1.0 - goal / current
    shown = 1.0 - measured / current
    width = asked - depth
    efficiency = 1.0 if width <= 0 else (shown - depth) / width
    efficiency = min(max(efficiency, 0.05), 1.0)
    # After a layer removal the choice's group ids are the renumbered
    # model's: they may name other layers in ``table``, so every curve is
    # scaled then.
    cut = set() if choice.depth else set(choice.removals)
    cut &= set(table["groups"])
    groups = {}
    for gid, entry in table["groups"].items():
        if cut and gid not in cut:
            groups[gid] = entry
            continue
        seconds = [float(x) for x in entry["seconds"]]
        full = max(zip(entry["widths"], seconds))[1]  # at the full width
        groups[gid] = dict(
            entry,
            seconds=[full - efficiency * (full - x) for x in seconds],
        )
    return dict(table, groups=groups)


def dense_architecture(modules):
    """A CPU copy of ``modules`` to time the unpruned model against."""
    return copy_module(modules).to(torch.device("cpu"))
