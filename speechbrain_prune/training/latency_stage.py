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
in the save folder before the surgery, so a run resumed after a kill makes
the same decision without timing again, and under DDP only the main
process times while every rank reads the same file.

Authors
 * speechbrain-prune team 2026
"""

import json
import logging
import os

import speechbrain as sb
import torch

from speechbrain_prune.costs.latency import build_latency_table, latency_ratio
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
        Selections at most, each with a larger fraction.
    """

    def __init__(self, setup, dense, folder=None, tolerance=0.02, tries=3):
        self.setup = setup
        self.dense = dense
        self.folder = folder
        self.tolerance = float(tolerance)
        self.tries = int(tries)
        self.memory = {}  # the cache without a folder
        self._dense_on_device = None  # copied when first timed

    def path(self, index):
        """The cache file of stage ``index``."""
        if self.folder is None:
            return None
        name = f"latency_{self.setup.key}_stage{index + 1}.json"
        return os.path.join(self.folder, name)

    def load(self, index):
        """What stage ``index`` measured before, or ``{}``."""
        path = self.path(index)
        if path is None:
            return dict(self.memory.get(index, {}))
        if not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            logger.warning(f"Unreadable latency cache {path}: timed again")
            return {}

    def save(self, index, cache):
        path = self.path(index)
        if path is None:
            self.memory[index] = dict(cache)
            return
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cache, f, indent=1)
        os.replace(tmp, path)

    def _timed(self, model, run):
        """Latency of ``model`` over the unpruned architecture's."""
        s = self.setup
        if self._dense_on_device is None:
            self._dense_on_device = copy_module(self.dense).to(s.device)
        return latency_ratio(
            self._dense_on_device, model, run, s.repeats, s.warmup, s.rounds
        )

    def measure(self, index, root, groups, run):
        """Current ratio and latency table of ``root`` (cached per stage).

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
        """
        cache = self.load(index)
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
                progress=sb.utils.distributed.if_main_process(),
            )
        table["conditions"] = self.setup.describe()
        cache = {"current_ratio": current, "table": table}
        self.save(index, cache)
        return cache

    def choose(self, index, root, groups, run, select, target):
        """Removals that bring the latency ratio to ``1 - target``.

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

        Returns
        -------
        removals : PruningChoice
            What to remove (nothing when already met).
        cache : dict
            What was measured: ``current_ratio``, ``table``, ``fraction``
            and ``measured_ratio`` (of the chosen candidate).
        """
        cache = self.measure(index, root, groups, run)
        goal = 1.0 - target
        current = cache["current_ratio"]
        if current <= goal:
            cache.setdefault("fraction", 0.0)
            cache.setdefault("measured_ratio", current)
            self.save(index, cache)
            return PruningChoice(), cache
        if "fraction" in cache:  # decided before a restart
            return select(cache["fraction"], cache["table"]), cache
        fraction = 1.0 - goal / current
        chosen = None
        for attempt in range(self.tries):
            try:
                removals = select(min(fraction, 0.999), cache["table"])
            except SelectionError:
                if chosen is None:
                    raise
                logger.warning(
                    f"Latency stage {index + 1}: the constraints allow no "
                    f"more than the previous try ({chosen[1]:.1%})"
                )
                removals, fraction, measured = chosen
                break
            candidate = copy_module(root).to(self.setup.device)
            removals.apply(candidate)
            with self.setup.timing():
                measured = self._timed(candidate, run)
            logger.info(
                f"Latency stage {index + 1}, try {attempt + 1}: asked "
                f"{fraction:.1%} less than the current model, measured "
                f"x{measured:.3f} of unpruned (goal x{goal:.3f})"
            )
            chosen = (removals, fraction, measured)
            if measured <= goal + self.tolerance:
                break
            fraction += (measured - goal) / current
        else:
            logger.warning(
                f"Latency stage {index + 1}: after {self.tries} selections "
                f"the model runs at x{measured:.3f} of the unpruned latency "
                f"on {self.setup.describe()}, above the goal x{goal:.3f}; "
                "the table's estimate and the end-to-end time disagree "
                "(noise, or steps in latency against width)"
            )
        cache["fraction"] = fraction
        cache["measured_ratio"] = measured
        self.save(index, cache)
        return removals, cache


def dense_architecture(modules):
    """A CPU copy of ``modules`` to time the unpruned model against."""
    return copy_module(modules).to(torch.device("cpu"))
