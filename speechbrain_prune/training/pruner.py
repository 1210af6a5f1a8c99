"""``Pruner``: pruning stages run inside SpeechBrain's training loop.

A ``Pruner`` is declared in a recipe's YAML (schedule, scorer, selection
options). It reaches the Brain through the recipe's checkpointer (use
:class:`~speechbrain_prune.training.PruningCheckpointer`, which hands it
the Brain when SpeechBrain registers the Brain as a recoverable) or through
:class:`~speechbrain_prune.training.PruningBrain` in code. At the start of
each training epoch (``Brain._fit_train``) it runs the stages that are due:

1. trace one training batch through the recipe's own ``compute_forward``
   to find the dependency groups of ``brain.modules``;
2. score every prunable channel with the scorer, on training batches, via
   the recipe's own ``compute_objectives``;
3. select the channels (and, with ``depth``, whole layers) to remove so
   that the stage's target (parameters, MACs or latency) is met;
4. remove them (surgery), record the step in the plan, remap the
   optimizer state, re-wrap DDP, log a table to the train log.

The plan, the stages done and the random-number state are saved in every
checkpoint, so a run killed at any point resumes with the pruned structure.

Authors
 * speechbrain-prune team 2026
"""

import fnmatch
import itertools
import logging
import os
import random
import time

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from torch.nn.parallel import DataParallel as DP
from torch.nn.parallel import DistributedDataParallel as DDP

from speechbrain_prune.costs import count_cost, count_macs, count_params
from speechbrain_prune.costs.latency import group_table_widths
from speechbrain_prune.costs.setup import LatencySetup
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.plan import PruningPlan
from speechbrain_prune.scorers import Scorer, brain_loss_fn, get_scorer
from speechbrain_prune.selection import SelectionError, Selector
from speechbrain_prune.selection.joint import (
    PruningChoice,
    allowed_depth_candidates,
    latency_cost_ratio,
    ordered_depth,
    table_without,
)
from speechbrain_prune.step import PruneStep, stage_selector
from speechbrain_prune.training.hook import InstanceHook
from speechbrain_prune.training.latency_stage import (
    LatencyStage,
    dense_architecture,
)
from speechbrain_prune.training.optim import optimizers_of, remap_optimizer
from speechbrain_prune.training.schedule import PruningSchedule
from speechbrain_prune.training.unattached import watch
from speechbrain_prune.utils import copy_module

logger = logging.getLogger(__name__)

#: How the stage targets' measure is written in logs.
MEASURES = {"macs": "MACs", "params": "parameters", "latency": "latency"}

#: What stage targets count when ``selection.target_type`` is not given.
#: Parameters, not MACs: on SpeechBrain's stock TIMIT CTC CRDNN a 50 % MAC
#: cut removed cheap CNN channels and left CPU latency at x1.02, while a
#: 50 % parameter cut reached the sequential RNN (CPU x0.63; x0.52 on the
#: LibriSpeech seq2seq encoder). See README.md, "Which measure".
DEFAULT_MEASURE = "params"

#: Key of the number of pruning steps in a checkpoint's metadata.
PRUNING_STEPS = "pruning_steps"


@register_checkpoint_hooks
class Pruner:
    """Pruning stages of a training run, declared in YAML.

    Arguments
    ---------
    scorer : Scorer or str
        Importance criterion (``!new:speechbrain_prune.scorers.TaylorScorer``
        or a registered name such as ``"taylor"``).
    target : float, optional
        Final fraction of the unpruned model's parameters (or of the
        measure ``selection.target_type`` names) to remove (with
        ``start_epoch``, ``n_stages``, ``every``, ``ramp``), or
    stages : list of dict, optional
        explicit stages ``[{epoch: 3, target: 0.3}, ...]``. A stage may
        count in its own measure: ``{epoch: 3, target: 0.3, target_type:
        params}``, then ``{epoch: 5, target: 0.5, target_type: latency}``
        (each target a cumulative fraction of the unpruned model's cost in
        its own measure; ``selection.target_type`` for stages naming
        none). A latency stage needs ``latency`` (the conditions).
    start_epoch, n_stages, every, ramp :
        See :class:`PruningSchedule`.
    selection : dict or Selector, optional
        Options of :class:`speechbrain_prune.selection.Selector` (e.g.
        ``protect``, ``min_keep_fraction``, ``round_to`` (a multiple, or
        ``table``: latency stages keep only widths their latency table
        measured, see below), ``mode``,
        ``normalization``, ``target_type``: ``params`` by default,
        ``macs`` or ``latency``), as a dict or as a Selector built in YAML
        (``!new:speechbrain_prune.selection.Selector``; its ``target`` is
        ignored, the stages set it, and its ``target_type`` defaults to
        ``macs``: name it).
    couplings : dict, optional
        ``consumer -> producer`` top-level modules the traced forward does
        not show (see :func:`discover_groups`).
    ignore_untraced : list of str, optional
        Top-level modules with parameters that take no part in training's
        forward and do not read any prunable output (else an error).
    reset_optimizer : bool
        Drop the optimizer state of pruned parameters instead of slicing it.
    recalibrate_batches : int
        After surgery, re-estimate BatchNorm running statistics on this
        many training batches (0: keep the sliced statistics).
    scoring_batch_size : int, optional
        Batch size of the scoring loader (default: the training loader's).
    latency : LatencySetup, optional
        Where and how latency targets are timed. With ``selection:
        {target_type: latency}`` the default is CPU, 2 threads, batch 1,
        10 s of audio; a stage that names ``target_type: latency`` itself
        (beside stages of other measures) needs it stated.
    schedule : PruningSchedule, optional
        The stages as an object (``!new:speechbrain_prune.PruningSchedule``)
        instead of ``target`` / ``stages`` and their keys.
    depth : bool, optional
        Whole RNN layers and DNN blocks may go too, ranked with the
        channels (:mod:`speechbrain_prune.selection.joint`: each mix of
        removed layers is completed by the channel selection and the one
        whose pruned model has the lowest loss wins). Default: on for
        latency targets (on a GPU only fewer layers are faster), off for
        MACs and parameters (per stage, with per-stage measures).
    seed : int
        Seeds the choice of scoring batches (and the random scorer).

    Latency is not monotonic in width: cuDNN picks another LSTM/GRU
    algorithm at hidden sizes of 192 and below (PyTorch's ``get_algo``;
    not timed in this repository), and channel counts that are not
    multiples of 8 ran slower in a one-off GPU probe (BENCHMARKS.md). A
    latency table measures every group at the
    ``LatencySetup``'s ``fractions`` (multiples of 8 for groups of 64
    channels or more), and torch RNN layers (LSTM/GRU) on both sides of
    its ``width_steps`` (192 and 200 by default on CUDA, none on the CPU);
    ``selection: {round_to: table}`` restricts the kept
    widths of a latency stage to those measured widths, so the selection
    counts measured times instead of interpolating across a step. Stages
    of other measures keep every width then.

    Example
    -------
    >>> pruner = Pruner("magnitude", target=0.3, start_epoch=2)
    >>> pruner.schedule.stages
    [(2, 0.3)]
    """

    def __init__(
        self,
        scorer,
        target=None,
        stages=None,
        start_epoch=1,
        n_stages=1,
        every=1,
        ramp="cubic",
        selection=None,
        couplings=None,
        ignore_untraced=(),
        reset_optimizer=False,
        recalibrate_batches=0,
        scoring_batch_size=None,
        latency=None,
        depth=None,
        schedule=None,
        seed=0,
    ):
        if depth is not None and not isinstance(depth, bool):
            raise ValueError(
                f"`depth` must be true, false or left out, got {depth!r}"
            )
        self.depth = depth
        if schedule is None:
            schedule = PruningSchedule(
                stages=stages,
                target=target,
                start_epoch=start_epoch,
                n_stages=n_stages,
                every=every,
                ramp=ramp,
            )
        elif not isinstance(schedule, PruningSchedule):
            raise ValueError(
                "`schedule` must be a speechbrain_prune.PruningSchedule "
                f"(`!new:`), got {type(schedule).__name__}"
            )
        elif target is not None or stages is not None:
            raise ValueError(
                "Give the stages once: either `schedule` or `target` / "
                "`stages` (with start_epoch, n_stages, every, ramp)"
            )
        self.schedule = schedule
        self.scorer = (
            scorer if isinstance(scorer, Scorer) else get_scorer(scorer)
        )
        if isinstance(selection, Selector):
            # The stages set the target; the selector gives the options.
            given = getattr(selection, "cost_given", True)
            selection = selection.options()
            if not given:
                # Not chosen, derived: stages of other measures rank by
                # their own.
                del selection["cost"]
        self.selection = dict(selection or {})
        self.latency = latency
        self._check_selection_keys()
        self.couplings = dict(couplings or {})
        self.ignore_untraced = list(ignore_untraced)
        self.reset_optimizer = bool(reset_optimizer)
        self.recalibrate_batches = int(recalibrate_batches)
        self.scoring_batch_size = scoring_batch_size
        self.seed = int(seed)
        self.brain = None
        self._pending_rng = None
        self.plan = PruningPlan()
        self.done = []
        self.base_macs = None
        self.base_params = None
        self.history = []
        self.learned_couplings = {}
        self._dense = None
        self._latency = None
        self._validated = False
        self._hook = None
        watch(self)  # a pruner that never reaches its Brain: loud error

    # Attaching to a Brain ---------------------------------------------------
    def attach(self, brain, checkpointer=None):
        """Connects to ``brain``: checks the set-up, hooks the epoch start.

        Everything that can be checked without data is checked here, when
        the Brain is built, before any training time is spent.
        """
        if self.brain is brain:
            return
        if self.brain is not None:
            raise RuntimeError("This Pruner is already attached to a Brain")
        self.brain = brain
        self._check_compiled(brain)
        self._check_patterns(brain.modules)
        pruned = bool(self.done or len(self.plan))
        keep = pruned and self._dense is not None
        if "latency" in self.measures and not keep:
            # Built from the YAML, before any checkpoint resizes it: the
            # unpruned architecture that latency ratios are timed against,
            # also when earlier stages count other measures. Attached
            # again after stages were done, the model is pruned: the
            # reference kept from the first attach stays.
            self._dense = dense_architecture(brain.modules)
        checkpointer = checkpointer or brain.checkpointer
        if checkpointer is not None:
            put_first(checkpointer, "pruner", self)
        from speechbrain_prune.training.brain import PruningBrain

        if not isinstance(brain, PruningBrain):
            # SpeechBrain's own train.py: the one hook on the instance.
            self._hook = InstanceHook(brain, self)

    def detach(self):
        """Disconnects from the Brain: its own methods come back, the
        checkpointer forgets the pruner. Stages done stay done (the model
        keeps its pruned shapes); attach again to go on.

        Example
        -------
        >>> import torch, speechbrain as sb
        >>> brain = sb.Brain({"lin": torch.nn.Linear(2, 2)})
        >>> pruner = Pruner("magnitude", target=0.3)
        >>> pruner.attach(brain)
        >>> "_fit_train" in vars(brain)
        True
        >>> pruner.detach()
        >>> "_fit_train" in vars(brain), pruner.brain
        (False, None)
        """
        if self.brain is None:
            return
        if self._hook is not None:
            self._hook.detach()
            self._hook = None
        checkpointer = getattr(self.brain, "checkpointer", None)
        if checkpointer is not None:
            if checkpointer.recoverables.get("pruner") is self:
                del checkpointer.recoverables["pruner"]
                checkpointer.optional_recoverables.pop("pruner", None)
        self.brain = None

    def on_epoch_end(self):
        """After an epoch's training: a random state still pending (the
        run resumed from a checkpoint taken after the epoch's last batch,
        so no batch restored it) is restored before validation draws."""
        if self._pending_rng is not None:
            _set_rng(self._pending_rng)
            self._pending_rng = None

    def on_batch_start(self):
        """Before a training step: after an intra-epoch recovery the random
        state is restored here, at the step where the interrupted run went
        on (the training loader has drawn a seed from it in between)."""
        if self._pending_rng is not None:
            _set_rng(self._pending_rng)
            self._pending_rng = None

    def _check_selection_keys(self):
        """Builds a Selector once now, so bad options fail at YAML load."""
        import inspect

        known = set(inspect.signature(Selector).parameters) - {"target"}
        unknown = set(self.selection) - known
        if unknown:
            raise ValueError(
                f"Unknown key(s) {sorted(unknown)} under the pruner's "
                f"`selection`; known keys: {sorted(known)}"
            )
        measure = self.selection.get("target_type", DEFAULT_MEASURE)
        if measure not in MEASURES:
            raise ValueError(
                f"selection.target_type {measure!r}: pruning stages count "
                f"their cumulative targets in {', '.join(MEASURES)}; use "
                "speechbrain_prune.selection.Selector directly for others"
            )
        if "latency_table" in self.selection:
            raise ValueError(
                "selection.latency_table: latency stages measure their own "
                "tables under the pruner's `latency` conditions (a "
                "LatencySetup); remove the key"
            )
        self.schedule.check_measures(measure)
        measures = self.measures
        if "latency" in measures and self.latency is None:
            if measure != "latency":
                stage = [
                    i + 1
                    for i in range(len(self.schedule.stages))
                    if self.measure_of(i) == "latency"
                ][0]
                raise ValueError(
                    f"Pruning stage {stage} has `target_type: latency` but "
                    "the pruner has no `latency` (a "
                    "!new:speechbrain_prune.LatencySetup stating device, "
                    "threads, batch_size, seconds): a latency target "
                    "holds under stated conditions. Add `latency:` to the "
                    "pruner."
                )
            self.latency = LatencySetup()
        if self.selection.get("round_to") == "table" and (
            "latency" not in measures
        ):
            raise ValueError(
                "selection.round_to: table keeps the widths a latency table "
                "measured, and no stage of this pruner counts latency; "
                "give a number (8 suits GPUs) or a latency stage"
            )
        others = [
            i
            for i in range(len(self.schedule.stages))
            if self.measure_of(i) != "latency"
        ]
        if self.selection.get("cost") == "latency" and others:
            i = others[0]
            raise ValueError(
                "selection.cost: latency ranks channels by the latency they "
                "save, which only a latency stage measures (its own table), "
                f"and stage {i + 1} counts {self.measure_of(i)}: remove "
                "`cost` (each stage then ranks by what it counts), set it "
                "to params or macs, or give every stage "
                "`target_type: latency`"
            )
        table = {"base_seconds": 1.0, "groups": {}} if self.latency else None
        for m in measures:
            final = self.schedule.targets_of(m, measure)[-1][1]
            self._selector(final, table if m == "latency" else None, m)

    def _selector(self, target, latency_table=None, measure=None):
        return stage_selector(
            measure or self.measure, self.selection, target, latency_table
        )

    @property
    def uses_depth(self):
        """Whether stages of ``selection.target_type`` may remove whole
        layers and blocks (see :meth:`uses_depth_at` per stage)."""
        if self.depth is None:
            return self.measure == "latency"
        return self.depth

    def uses_depth_at(self, index):
        """Whether stage ``index`` may remove whole layers and blocks:
        ``depth``, or by default only latency stages."""
        if self.depth is None:
            return self.measure_of(index) == "latency"
        return self.depth

    @property
    def measure(self):
        """What stage targets count where a stage names no measure:
        ``selection.target_type`` (``params`` by default)."""
        return self.selection.get("target_type", DEFAULT_MEASURE)

    def measure_of(self, index):
        """What stage ``index``'s target counts.

        Example
        -------
        >>> pruner = Pruner("magnitude", stages=[
        ...     {"epoch": 2, "target": 0.3},
        ...     {"epoch": 4, "target": 0.2, "target_type": "macs"}])
        >>> [pruner.measure_of(i) for i in range(2)], pruner.measures
        (['params', 'macs'], ['params', 'macs'])
        """
        return self.schedule.measure_of(index, self.measure)

    @property
    def measures(self):
        """Every measure a stage counts in, in order of first use."""
        return self.schedule.used_measures(self.measure)

    def _base_cost(self, measure=None):
        """The unpruned model's cost in ``measure``.

        Parameters and MACs are both recorded when the run first starts, so
        every stage, whatever it counts, counts against the unpruned
        model. Latency is counted as a ratio: each latency stage times the
        current model side by side with the unpruned architecture (kept
        from when the Brain was built, whenever any stage counts latency).
        """
        measure = measure or self.measure
        if measure == "params":
            return self.base_params
        if measure == "latency":
            return 1.0
        return self.base_macs

    @staticmethod
    def _check_compiled(brain):
        for flag, keys_attr, what in (
            ("jit", "jit_module_keys", "--jit (torch.jit.script)"),
            ("compile", "compile_module_keys", "--compile (torch.compile)"),
        ):
            if getattr(brain, flag, False):
                keys = getattr(brain, keys_attr, None) or list(brain.modules)
                raise ValueError(
                    f"{what} would freeze modules {list(keys)} before the "
                    "pruning stages change their shapes. Run the pruning "
                    f"recipe without {what.split()[0]}, then script or "
                    "compile the final, pruned model (see the README)."
                )

    def _check_patterns(self, modules):
        names = [n for n, _ in modules.named_modules() if n]
        protect = self.selection.get("protect", ()) or ()
        if isinstance(protect, str):
            protect = [protect]  # one pattern, not its characters
        for pattern in protect:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ValueError(
                    f"selection.protect pattern {pattern!r} matches no module "
                    f"of brain.modules (e.g. {names[:6]})"
                )
        for name in list(self.couplings) + list(self.couplings.values()):
            if name not in modules:
                raise ValueError(
                    f"couplings: {name!r} is not in brain.modules "
                    f"({list(modules)})"
                )
        for name in self.ignore_untraced:
            if name not in modules:
                raise ValueError(
                    f"ignore_untraced: {name!r} is not in brain.modules "
                    f"({list(modules)})"
                )

    # The epoch hook -----------------------------------------------------
    def on_epoch_start(self, train_set, epoch):
        """Runs the stages due at the start of ``epoch``."""
        if not self._validated:
            self._validate(train_set, epoch)
        for index in self.schedule.due(epoch, self.done):
            self.run_stage(index, train_set, epoch)

    def _validate(self, train_set, epoch):
        """Dry run before training: trace a batch, check groups and costs."""
        self._check_schedule_fits(epoch)
        with self._unwrapped() as root:
            batch = self._reference_batch(train_set)
            run = self._runner(batch)
            scratch = copy_module(root)
            groups = self._groups(scratch, run)
            if not groups.prunable():
                raise ValueError(
                    "No prunable group in brain.modules:\n" + groups.describe()
                )
            if self.base_macs is None:
                if len(self.plan):
                    raise RuntimeError(
                        "The checkpoint holds a pruned model but not the "
                        "unpruned model's cost: targets cannot be counted"
                    )
                self.base_macs = count_macs(scratch, run=run)
                self.base_params = count_params(root)
            if not len(self.plan):
                # Can each measure's last target be met at all? Fails now,
                # not after epochs of training.
                for measure in self.measures:
                    index, target = self.schedule.targets_of(
                        measure, self.measure
                    )[-1]
                    table = None
                    if measure == "latency" and self.measure_of(0) == measure:
                        # Stage 1's own table, reused by stage 1.
                        table = self._latency_cache(
                            0, scratch, groups, train_set
                        )["table"]
                    elif measure == "latency":
                        # Stage 1 changes the model first: a later stage
                        # measures its own table then. The check needs
                        # only the narrowest widths (and the depth).
                        widths = self._narrowest_widths(
                            scratch, groups, index, target
                        )
                        table = self._latency_cache(
                            "dense", scratch, groups, train_set, widths
                        )["table"]
                    self._check_reachable(
                        scratch, groups, run, table, index, target
                    )
        self._validated = True

    def _check_reachable(self, scratch, groups, run, table, index, target):
        """Raises now if stage ``index``'s ``target`` cannot be met, with
        whole layers removed too where the stage allows depth."""
        measure = self.measure_of(index)
        try:
            self._selector(target, table, measure).check(scratch, groups, run)
            return
        except SelectionError as err:
            candidates = self._depth_candidates(scratch, index)
            if not candidates:
                raise self._unreachable(index, err) from None
        model, removed = copy_module(scratch), []
        for cand in ordered_depth(candidates):
            try:
                cand.apply(model)
            except (ValueError, TypeError):
                continue
            removed.append(cand)
        sub = None
        if table is not None:
            ratio = latency_cost_ratio(table)(model, removed)
            sub = table_without(table, removed)
        else:
            ratio = count_cost(copy_module(model), measure, run) / count_cost(
                copy_module(scratch), measure, run
            )
        if ratio <= 1.0 - target:
            return
        groups = self._groups(copy_module(model), run)
        try:
            self._selector(1.0 - (1.0 - target) / ratio, sub, measure).check(
                model, groups, run
            )
        except SelectionError as err:
            raise self._unreachable(index, err) from None

    def _narrowest_widths(self, scratch, groups, index, target):
        """``group id -> [width]``: the narrowest width stage ``index``'s
        selection may keep of each group (``[]`` where none may go), under
        its ``min_keep``, ``min_keep_fraction``, ``round_to`` (``table``:
        the narrowest width a table of ``self.latency`` would measure)
        and ``protect``: all a check that its target can be reached needs
        of a latency table."""
        setup = self.latency
        grid = {"base_seconds": 1.0, "depth": {}, "groups": {}}
        for g in groups.prunable():
            widths = group_table_widths(
                scratch, g, setup.fractions, setup.width_steps
            )
            widths.append(g.size)
            grid["groups"][g.id] = {
                "widths": widths,
                "seconds": [1.0] * len(widths),
            }
        selector = self._selector(target, grid, self.measure_of(index))
        cands = selector.candidates(scratch, groups)
        return {
            g.id: [g.size - cands[g.id][-1]] if cands.get(g.id) else []
            for g in groups.prunable()
        }

    def _unreachable(self, index, err):
        """``err`` (a SelectionError) naming the stage, when stages mix
        measures."""
        if len(self.measures) < 2:
            return err
        return SelectionError(
            f"Pruning stage {index + 1} ({self.measure_of(index)}): {err}"
        )

    def _check_schedule_fits(self, epoch):
        """Every stage not yet done must fall within the run's epochs.

        The last epoch is the limit of the recipe's ``epoch_counter`` (in
        ``hparams``), checked only when that counter is the one driving
        ``fit`` (its ``current`` is this epoch): a recipe without one, or
        looping otherwise, is not checked. A run resumed with a larger
        ``number_of_epochs`` is checked against the new limit. A run in
        which no stage runs at all (a dense phase) is a warning.
        """
        hparams = getattr(self.brain, "hparams", None)
        counter = getattr(hparams, "epoch_counter", None)
        limit = getattr(counter, "limit", None)
        if limit is None or getattr(counter, "current", None) != epoch:
            return
        dense = self.schedule.check_within(limit, self.done)
        if dense:
            logger.warning(dense)

    # A stage --------------------------------------------------------------
    def run_stage(self, index, train_set, epoch):
        """Scores, selects and removes channels (and layers) for stage
        ``index``."""
        brain = self.brain
        start = time.time()
        stage_epoch, target = self.schedule.stages[index]
        measure = self.measure_of(index)
        brain.on_stage_start(sb.Stage.TRAIN, epoch)
        with self._unwrapped() as root:
            batch = self._reference_batch(train_set)
            run = self._runner(batch)
            # Tracing and counting run on a scratch copy: the forward runs in
            # training mode there and may update statistics (normalisers).
            scratch = copy_module(root)
            groups = self._groups(scratch, run)
            macs_before = count_macs(scratch, run=run)
            params_before = count_params(root)
            goal = (1.0 - target) * self._base_cost(measure)
            choice = PruningChoice([], groups, {})
            latency = None
            if measure == "latency":
                latency = self._latency_cache(index, scratch, groups, train_set)
                cost_before = latency["current_ratio"]
            else:
                cost_before = count_cost(scratch, measure, run)
            report = []
            if cost_before > goal:
                batches = self._scoring_batches(train_set, index)
                chooser = PruneStep(
                    root,
                    run,
                    self._model_loss,
                    batches,
                    self.scorer,
                    measure=measure,
                    selection=self.selection,
                    depth=self.uses_depth_at(index),
                    groups_of=lambda model: self._groups(model, run),
                    groups=groups,
                    make_selector=lambda fraction, table=None: self._selector(
                        fraction, table, measure
                    ),
                    seed=self.seed,
                )
                if latency is None:
                    choice = chooser(1.0 - goal / cost_before)
                else:
                    choice, latency = self._latency_choice(
                        index, scratch, groups, train_set, chooser, target
                    )
                report = chooser.report
                ledger = choice.apply(root, plan=self.plan)
                for opt in optimizers_of(brain):
                    remap_optimizer(
                        opt, ledger, root.parameters(), self.reset_optimizer
                    )
                if self.recalibrate_batches:
                    self._recalibrate(root, train_set, index)
            after = copy_module(root)
            macs_after = count_macs(after, run=run)
            params_after = count_params(root)
            if latency is None:
                cost_after = count_cost(after, measure, run)
            else:  # measured end to end; noise is reported, not an error
                cost_after = min(
                    latency.get("measured_ratio", cost_before), goal
                )
        if cost_after > goal * (1 + 1e-9):
            raise RuntimeError(
                f"Pruning stage {index + 1} at epoch {epoch} did not reach "
                f"its target ({target:.0%} fewer {MEASURES[measure]} "
                f"than unpruned: at most {goal:,.0f}, the model has "
                f"{cost_after:,.0f}); {choice.describe()} were removed. "
                "Relax the `selection` constraints or lower the target."
            )
        self.done.append(index)
        shown = choice.groups if choice.groups is not None else groups
        record = {
            "stage": index,
            "epoch": epoch,
            "target": target,
            "scorer": type(self.scorer).__name__,
            "macs_before": macs_before,
            "macs_after": macs_after,
            "params_before": params_before,
            "params_after": params_after,
            "base_macs": self.base_macs,
            "base_params": self.base_params,
            "measure": measure,
            "seconds": time.time() - start,
            "latency": None
            if latency is None
            else {
                "conditions": self.latency.describe(),
                "before": latency["current_ratio"],
                "after": latency.get(
                    "measured_ratio", latency["current_ratio"]
                ),
            },
            "depth": [c.name for c in choice.depth],
            "mixes": report,
            "groups": [
                (g.id, g.size - len(choice.removals.get(g.id, ())), g.size)
                for g in shown.values()
                if g.prunable
            ],
        }
        self.history.append(record)
        self._log(record)
        return record

    def _depth_candidates(self, scratch, index):
        if not self.uses_depth_at(index):
            return []
        return allowed_depth_candidates(
            scratch, self.selection.get("protect", ()) or ()
        )

    def _swapped(self, modules):
        """Context: ``brain.modules`` is ``modules`` meanwhile."""
        return _Swapped(self.brain, modules)

    def _model_loss(self, modules, batch):
        """The recipe's training loss of ``batch`` through ``modules``
        (``brain.modules`` is swapped for them meanwhile)."""
        with self._swapped(modules):
            return brain_loss_fn(self.brain)(batch)

    # Latency stages -----------------------------------------------------
    def _latency_stage(self):
        if self._latency is None:
            checkpointer = getattr(self.brain, "checkpointer", None)
            folder = getattr(checkpointer, "checkpoints_dir", None)
            if folder is not None:
                os.makedirs(folder, exist_ok=True)
            self._latency = LatencyStage(self.latency, self._dense, folder)
        return self._latency

    def _latency_run(self, train_set):
        dataset = getattr(train_set, "dataset", train_set)
        collate = getattr(train_set, "collate_fn", None)
        batch = self.latency.batch_from(dataset[0], collate)
        return self.latency.runner(self.brain, batch)

    def _rerun(self, index):
        """How many times stage ``index`` was done before (the history is
        the checkpoint's: the same on every rank). A stage run again (its
        target raised on resume) prunes the model its earlier run left:
        its latency is measured anew, not read from that run's cache."""
        if isinstance(index, str):
            return 0
        return sum(1 for r in self.history if r["stage"] == index)

    def _latency_cache(self, index, scratch, groups, train_set, widths=None):
        """Stage ``index``'s current ratio and table (timed on the main
        process only, then read from the save folder by every rank);
        ``widths``: see :meth:`LatencyStage.measure`."""
        stage = self._latency_stage()
        run = self._latency_run(train_set)
        rerun = self._rerun(index)
        args = [index, copy_module(scratch), groups, run, rerun, widths]
        if stage.folder is None:
            return stage.measure(*args)
        sb.utils.distributed.run_on_main(stage.measure, args=args)
        return stage.load(index, rerun)

    def _latency_choice(self, index, scratch, groups, train_set, select, t):
        """Removals meeting latency target ``t``, checked end to end."""
        stage = self._latency_stage()
        run = self._latency_run(train_set)
        rerun = self._rerun(index)
        args = [index, copy_module(scratch), groups, run, select, t, rerun]
        # On every rank: the selection's scores and losses are averaged
        # over the ranks (collectives), so it cannot run on one alone;
        # the main process times the candidates and shares the results.
        choice, cache = stage.choose(*args)
        sb.utils.distributed.ddp_barrier()  # the cache file is written
        return choice, cache

    # Pieces -------------------------------------------------------------
    def _runner(self, batch):
        """``run(root)``: the recipe's training forward through ``root``.

        ``brain.modules`` is swapped for ``root`` meanwhile, so copies of the
        modules can be traced and counted. The forward runs in training
        mode (a normaliser may have no statistics yet in eval mode) with the
        random-number state forked, so only ``root`` is affected: give it
        copies, never the live modules.
        """
        brain = self.brain

        def run(root):
            live = brain.modules
            brain.modules = root
            root.train()
            try:
                with torch.random.fork_rng(devices=[]):
                    return brain.compute_forward(batch, sb.Stage.TRAIN)
            finally:
                brain.modules = live

        return run

    def _groups(self, root, run):
        """The groups of ``root``, with the couplings of skipped modules.

        A module the recipe calls only in some epochs (the stock seq2seq
        recipes' CTC head, after ``number_of_ctc_epochs``) is connected
        to what it read when it last took part: every traced forward's
        couplings are kept with the run (and its checkpoints); when a
        skipped module was never seen, a dry run of the first epoch's
        forward (``epoch_counter.current = 1``) shows it.
        """
        groups = discover_groups(root, run, self.couplings)
        self.learned_couplings.update(groups.observed_couplings)
        untraced = self._untraced(groups)
        if untraced and not set(untraced) <= set(self.learned_couplings):
            self._learn_from_first_epoch(root, run)
        learned = {
            n: self.learned_couplings[n]
            for n in untraced
            if n in self.learned_couplings
        }
        if learned:
            logger.info(
                f"Couplings of modules this forward skips, as seen in an "
                f"earlier forward: {learned}"
            )
            groups = discover_groups(root, run, {**learned, **self.couplings})
            untraced = self._untraced(groups)
        if untraced:
            raise ValueError(
                f"Modules {untraced} take no part in the training forward "
                "(compute_forward, Stage.TRAIN), neither now nor in the "
                "first epoch's, so what they read cannot be seen. If one "
                "reads another module's output, declare it under the "
                "pruner's `couplings` ({consumer: producer}); if it reads "
                "nothing prunable, list it under `ignore_untraced`."
            )
        return groups

    def _untraced(self, groups):
        return [n for n in groups.untraced if n not in self.ignore_untraced]

    def _learn_from_first_epoch(self, root, run):
        """Traces the forward as the first epoch runs it, on a copy."""
        hparams = getattr(self.brain, "hparams", None)
        counter = getattr(hparams, "epoch_counter", None)
        if counter is None or not hasattr(counter, "current"):
            return
        saved = counter.current
        counter.current = 1
        try:
            groups = discover_groups(copy_module(root), run, self.couplings)
        finally:
            counter.current = saved
        self.learned_couplings.update(groups.observed_couplings)

    def _loader(self, train_set, seed, batch_size=None):
        """A seeded loader over the training data, apart from training's."""
        dataset = getattr(train_set, "dataset", train_set)
        if batch_size is None:
            batch_size = (
                self.scoring_batch_size
                or getattr(train_set, "batch_size", None)
                or 8
            )
        generator = torch.Generator().manual_seed(seed)
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
        collate = getattr(train_set, "collate_fn", None)
        if collate is None:
            collate = sb.dataio.batch.PaddedBatch
        # Its own generator: iterating it must not draw from the global
        # random state, or a resumed run would diverge from an uninterrupted
        # one (torch draws a base seed per iterator from the generator).
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            generator=generator,
        )

    def _reference_batch(self, train_set):
        """The same batch at every stage: MACs are compared on it."""
        return next(iter(self._loader(train_set, self.seed)))

    def _scoring_batches(self, train_set, index):
        """The scorer's batches; fewer than ``n_batches``: a warning."""
        n = self.scorer.n_batches
        loader = self._loader(train_set, self.seed + 1000 * (index + 1))
        where = ""
        if (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            rank = torch.distributed.get_rank()
            world = torch.distributed.get_world_size()
            batches = list(itertools.islice(loader, rank, n * world, world))
            where = f" on rank {rank} of {world}"
        else:
            batches = list(itertools.islice(loader, n))
        if len(batches) < n and not getattr(self.scorer, "data_free", False):
            logger.warning(
                f"Pruning stage {index + 1}: the scorer's `n_batches` is {n} "
                f"but the training data gives {len(loader)} batches of "
                f"{loader.batch_size}: scored on {len(batches)} batches"
                f"{where}. Lower `n_batches` to match."
            )
        return batches

    def _recalibrate(self, root, train_set, index):
        """Re-estimates BatchNorm running statistics after surgery.

        Only the BatchNorm layers run in training mode (cumulative average
        over ``recalibrate_batches`` batches); dropout stays off and other
        statistics (feature normalisers) are left alone.
        """
        norms = [
            m
            for m in root.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        momenta = [m.momentum for m in norms]
        was_training = root.training
        root.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        loader = self._loader(train_set, self.seed + 7 + index)
        with torch.no_grad():
            for batch in itertools.islice(loader, self.recalibrate_batches):
                self.brain.compute_forward(batch, sb.Stage.TRAIN)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        root.train(was_training)

    class _Unwrapped:
        def __init__(self, pruner):
            self.pruner = pruner
            self.wrapped = False

        def __enter__(self):
            modules = self.pruner.brain.modules
            for name, module in list(modules.items()):
                if isinstance(module, (DDP, DP)):
                    modules[name] = module.module
                    self.wrapped = True
            return modules

        def __exit__(self, *exc):
            if self.wrapped:
                self.pruner.brain._wrap_distributed()
            return False

    def _unwrapped(self):
        """Context: ``brain.modules`` without DDP/DP wrappers, re-wrapped."""
        return Pruner._Unwrapped(self)

    def _log(self, record):
        lines = [
            f"Pruning stage {record['stage'] + 1}/{len(self.schedule.stages)} "
            f"at epoch {record['epoch']} ({record['scorer']}, target "
            f"{record['target']:.0%} fewer "
            f"{MEASURES[record['measure']]} than unpruned)",
            "| group | kept / total |",
            "|---|---:|",
        ]
        for gid, kept, total in record["groups"]:
            lines.append(f"| {gid} | {kept} / {total} |")
        if record.get("mixes"):
            lines.append(
                "Layers and channels ranked together (loss of each mix on "
                "the scoring batches):"
            )
            for row in record["mixes"]:
                loss = "-" if row["loss"] is None else f"{row['loss']:.4f}"
                mark = " <- chosen" if row.get("chosen") else ""
                lines.append(
                    f"  removed layers {row['depth'] or 'none'}, "
                    f"{row['channels']} channels: loss {loss}"
                    f"{' ' + row['note'] if row['note'] else ''}{mark}"
                )
        if record.get("latency"):
            lat = record["latency"]
            lines.append(
                f"latency ({lat['conditions']}, measured): "
                f"x{lat['before']:.3f} -> x{lat['after']:.3f} of unpruned"
            )
        lines.append(
            f"MACs {record['macs_before']:,} -> {record['macs_after']:,} "
            f"({record['macs_after'] / record['base_macs']:.1%} of "
            f"unpruned); params {record['params_before']:,} -> "
            f"{record['params_after']:,} ("
            f"{record['params_after'] / record['base_params']:.1%} of "
            "unpruned)"
        )
        text = "\n".join(lines)
        logger.info(text)
        hparams = getattr(self.brain, "hparams", None)
        train_logger = getattr(hparams, "train_logger", None)
        save_file = getattr(train_logger, "save_file", None)
        if save_file and sb.utils.distributed.if_main_process():
            with open(save_file, "a") as f:
                f.write(text + "\n")

    # Checkpointing --------------------------------------------------------
    @mark_as_saver
    def _save(self, path):
        torch.save(
            {
                "plan": self.plan.to_dict(),
                "done": list(self.done),
                "base_macs": self.base_macs,
                "base_params": self.base_params,
                "history": self.history,
                "learned_couplings": dict(self.learned_couplings),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
            },
            path,
        )

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        state = torch.load(path, weights_only=False)
        plan = PruningPlan.from_dict(state["plan"])
        live = len(self.plan)
        if len(plan) < live or plan.steps[:live] != self.plan.steps:
            raise RuntimeError(
                f"Checkpoint {path} holds another pruning structure ("
                f"{len(plan)} steps) than the live model ({live} steps). "
                "PruningCheckpointer only loads checkpoints of the live "
                "structure or later; build a fresh model to load this one."
            )
        self._reconcile(state["done"], state.get("history", []), path)
        extra = PruningPlan(plan.steps[live:])
        if len(extra) and self.brain is not None:
            with self._unwrapped() as root:
                ledger = extra.apply(root)
                for opt in optimizers_of(self.brain):
                    remap_optimizer(opt, ledger, root.parameters())
        elif len(extra):
            raise RuntimeError("The pruner must be attached before recovery")
        self.plan = plan
        self.done = self._reconcile(state["done"], state.get("history", []))
        self.base_macs = state["base_macs"]
        self.base_params = state["base_params"]
        self.history = list(state.get("history", []))
        self.learned_couplings.update(state.get("learned_couplings", {}))
        rng = state.get("rng")
        if rng and end_of_epoch:
            _set_rng(rng)
        elif rng:
            self._pending_rng = rng

    def _reconcile(self, done, history, path=None):
        """The stages done, matched with the YAML's (maybe changed) schedule.

        Targets are cumulative within each measure, so what counts is how
        far the checkpoint's model was pruned in it (``reached``, the
        highest target of its stages done in that measure). A stage done
        there whose YAML target is now higher, or that now counts a
        measure its model was not pruned that far in, is done again,
        pruning the rest, at the next epoch start; a model pruned beyond
        the YAML's final target of a measure is an error (removed channels
        cannot come back). Called first with ``path`` (checks only, before
        the model changes), then to get the stages done.
        """
        stages = self.schedule.stages
        reached = {}
        for r in history:
            if r["stage"] in done:
                m = r.get("measure", "macs")
                reached[m] = max(reached.get(m, r["target"]), r["target"])
        for m in self.measures:
            final = self.schedule.targets_of(m, self.measure)[-1][1]
            got = reached.get(m)
            if got is not None and got > final + 1e-9:
                raise ValueError(
                    f"The checkpoint{' ' + str(path) if path else ''} holds "
                    f"a model pruned to {got:.0%} fewer {MEASURES[m]}, but "
                    f"the pruner's `target` (or last of `stages` counting "
                    f"{m}) is now {final:.0%}: removed channels cannot come "
                    f"back. Set the target back to at least {got:g}, or "
                    "start a fresh run (another `output_folder`) for a "
                    "smaller target."
                )
        if path is not None:
            return done
        kept = []
        rerun = (
            "it runs again at the start of the next epoch, pruning the rest "
            "(when the run has epochs left: raise `number_of_epochs` "
            "otherwise)."
        )
        for i in done:
            if i >= len(stages):
                continue  # the schedule has fewer stages now
            m, target = self.measure_of(i), stages[i][1]
            got = reached.get(m)
            own = [r for r in history if r["stage"] == i]
            was = own[-1].get("measure", "macs") if own else m
            short = got is None or target > got + 1e-9
            if was != m and short:
                logger.warning(
                    f"Pruning stage {i + 1} was done counting "
                    f"{MEASURES[was]} (checkpoint); the schedule now has it "
                    f"count {MEASURES[m]} (`target_type` changed): {rerun}"
                )
                continue
            if got is not None and target > got + 1e-9:
                logger.warning(
                    f"Pruning stage {i + 1} was done to {got:.0%} fewer "
                    f"{MEASURES[m]} (checkpoint); the schedule now asks "
                    f"{target:.0%} (`target`/`stages` changed): {rerun}"
                )
                continue
            kept.append(i)
        return kept


class _Swapped:
    def __init__(self, brain, modules):
        self.brain, self.modules, self.live = brain, modules, None

    def __enter__(self):
        self.live = self.brain.modules
        self.brain.modules = self.modules
        return self.modules

    def __exit__(self, *exc):
        self.brain.modules = self.live
        return False


def _set_rng(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def put_first(checkpointer, name, obj):
    """Registers ``obj`` as the first recoverable: it loads before the rest.

    The plan must resize the model before the model's weights load. It is
    optional: a checkpoint without it (a run trained with SpeechBrain's
    stock ``Checkpointer``, or before pruning was added) is a dense model
    with no stage done yet.
    """
    if checkpointer.recoverables.get(name) is not obj:
        checkpointer.add_recoverable(name, obj, optional_load=True)
    else:
        checkpointer.optional_recoverables[name] = True
    items = [(name, obj)] + [
        (k, v) for k, v in checkpointer.recoverables.items() if k != name
    ]
    checkpointer.recoverables.clear()
    checkpointer.recoverables.update(items)
