"""When to prune and how much: stages as (epoch, cumulative target).

A stage may name its own measure (``target_type``: ``params``, ``macs`` or
``latency``); stages that name none count in the pruner's
``selection.target_type``.

Authors
 * speechbrain-prune team 2026
"""

RAMPS = ("linear", "cubic")

#: What a stage's cumulative target may count.
STAGE_MEASURES = ("params", "macs", "latency")


class PruningSchedule:
    """Pruning stages: at the start of which epoch, down to which target.

    Targets are cumulative fractions of the *unpruned* model's cost removed
    once the stage is done, so ``[0.1, 0.2, 0.3]`` prunes a tenth of the
    original cost at each of three stages. Each stage counts in one measure:
    its own ``target_type`` or, when it names none, the pruner's
    ``selection.target_type``. Within one measure targets must not
    decrease; across measures they are independent (30 % fewer parameters,
    then 50 % less latency).

    Arguments
    ---------
    stages : list of dict, optional
        Explicit stages, ``[{epoch: 3, target: 0.3}, ...]``, each with an
        optional ``target_type`` (``params``, ``macs`` or ``latency``).
    target : float, optional
        Final target; with ``start_epoch``, ``n_stages``, ``every`` and
        ``ramp`` it generates the stages (one-shot when ``n_stages=1``).
    start_epoch : int
        Epoch (1-based, as SpeechBrain counts) whose start runs stage 1.
    n_stages : int
        Number of stages (iterative pruning).
    every : int
        Epochs between stages: the fine-tuning (weight update) in between.
    ramp : str
        ``cubic`` (AGP: prune fast first, slowly at the end) or ``linear``.

    Example
    -------
    >>> PruningSchedule(target=0.3, start_epoch=2, n_stages=3).stages
    [(2, 0.2111), (3, 0.2889), (4, 0.3)]
    >>> PruningSchedule(stages=[{"epoch": 5, "target": 0.5}]).stages
    [(5, 0.5)]
    >>> mixed = PruningSchedule(stages=[
    ...     {"epoch": 3, "target": 0.3, "target_type": "params"},
    ...     {"epoch": 5, "target": 0.2, "target_type": "latency"}])
    >>> mixed.measures, mixed.measure_of(1, "params")
    (['params', 'latency'], 'latency')
    """

    def __init__(
        self,
        stages=None,
        target=None,
        start_epoch=1,
        n_stages=1,
        every=1,
        ramp="cubic",
    ):
        if stages is not None and target is not None:
            raise ValueError(
                "Give either `stages` or `target` (with `start_epoch`, "
                "`n_stages`, `every`, `ramp`), not both"
            )
        if stages is None:
            if target is None:
                raise ValueError(
                    "The pruning schedule needs `stages` or `target`"
                )
            stages = self._ramp(target, start_epoch, n_stages, every, ramp)
            self.keys = (
                f"start_epoch={start_epoch}, n_stages={n_stages}, every={every}"
            )
            measures = [None] * len(stages)
        else:
            self.keys = "stages"
            parsed = [self._parse(s) for s in stages]
            stages = [(e, t) for e, t, _ in parsed]
            measures = [m for _, _, m in parsed]
        epochs = [e for e, _ in stages]
        if not stages:
            raise ValueError("`stages` is empty: declare at least one stage")
        if epochs != sorted(set(epochs)):
            raise ValueError(
                f"Stage epochs must increase strictly, got {epochs}"
            )
        for _, t in stages:
            check_fraction(t, "target")
        self.stages = stages
        #: Each stage's ``target_type``, None where it names none.
        self.measures = measures
        self.check_measures(None)

    def measure_of(self, index, default):
        """What stage ``index``'s target counts (``default``: the pruner's
        ``selection.target_type``)."""
        return self.measures[index] or default

    def targets_of(self, measure, default):
        """``(index, target)`` of the stages counting in ``measure``."""
        return [
            (i, t)
            for i, (_, t) in enumerate(self.stages)
            if self.measure_of(i, default) == measure
        ]

    def used_measures(self, default):
        """The measures the stages count in, in order of first use."""
        out = []
        for i in range(len(self.stages)):
            m = self.measure_of(i, default)
            if m not in out:
                out.append(m)
        return out

    def check_measures(self, default):
        """Targets must not decrease within one measure.

        Stages naming no ``target_type`` count in ``default`` (None: they
        are checked as one measure of their own).

        Example
        -------
        >>> PruningSchedule(stages=[
        ...     {"epoch": 3, "target": 0.3, "target_type": "params"},
        ...     {"epoch": 5, "target": 0.5, "target_type": "latency"},
        ...     {"epoch": 7, "target": 0.2}]).check_measures("params")
        Traceback (most recent call last):
        ...
        ValueError: Stage targets are cumulative ... (in params), got [0.3, 0.2]
        """
        for measure in self.used_measures(default):
            targets = [t for _, t in self.targets_of(measure, default)]
            if targets != sorted(targets):
                what = "" if measure is None else f" (in {measure})"
                raise ValueError(
                    f"Stage targets are cumulative and must not decrease "
                    f"within one measure{what}, got {targets}"
                )

    @staticmethod
    def _parse(stage):
        if isinstance(stage, dict):
            unknown = set(stage) - {"epoch", "target", "target_type"}
            if unknown or "epoch" not in stage or "target" not in stage:
                raise ValueError(
                    "A stage is {epoch: E, target: T} with an optional "
                    f"target_type, got {stage}"
                )
            epoch, target = stage["epoch"], stage["target"]
            measure = stage.get("target_type")
        elif len(stage) == 3:
            epoch, target, measure = stage
        else:
            epoch, target = stage
            measure = None
        if measure is not None and measure not in STAGE_MEASURES:
            raise ValueError(
                f"Unknown stage target_type {measure!r} in {stage}: a "
                f"stage's target counts {', '.join(STAGE_MEASURES)} (or, "
                "without `target_type`, the pruner's "
                "selection.target_type)"
            )
        return int(epoch), float(target), measure

    @staticmethod
    def _ramp(target, start_epoch, n_stages, every, ramp):
        check_fraction(target, "target")
        if ramp not in RAMPS:
            raise ValueError(f"Unknown ramp {ramp!r}; use one of {RAMPS}")
        if int(n_stages) < 1 or int(every) < 1 or int(start_epoch) < 1:
            raise ValueError("n_stages, every and start_epoch must be >= 1")
        out = []
        for k in range(1, int(n_stages) + 1):
            frac = k / n_stages
            done = frac if ramp == "linear" else 1 - (1 - frac) ** 3
            out.append(
                (
                    int(start_epoch) + (k - 1) * int(every),
                    round(target * done, 4),
                )
            )
        return out

    def due(self, epoch, done):
        """Indices of stages due at the start of ``epoch`` not yet done."""
        return [
            i
            for i, (e, _) in enumerate(self.stages)
            if e <= epoch and i not in done
        ]

    def check_within(self, last_epoch, done=()):
        """Checks that the stages not yet done fall within ``last_epoch``.

        A stage runs at the start of its epoch, so a stage scheduled after
        the run's last epoch never runs. When some stages would run and
        others not (an iterative schedule cut short, or a resumed run), the
        model would end part-way to its target: an error. When no stage
        runs in this run at all (none done, all later), the run is a dense
        phase to be resumed with more epochs (as the demo's dense runs
        are): the message is returned for a warning. Stages already done
        are not checked again.

        Arguments
        ---------
        last_epoch : int
            The run's last epoch (the epoch counter's ``limit``, i.e. the
            recipe's ``number_of_epochs``).
        done : list of int
            Indices of the stages already done.

        Returns
        -------
        str or None
            What to warn about when the model stays dense in this run.

        Example
        -------
        >>> s = PruningSchedule(target=0.3, start_epoch=1, n_stages=3, every=2)
        >>> s.check_within(5)
        >>> s.check_within(3)
        Traceback (most recent call last):
        ...
        ValueError: Pruning stage 3 of 3 is scheduled at ... epoch 5 ...
        >>> print(PruningSchedule(target=0.3, start_epoch=10).check_within(3))
        No pruning stage runs in this run: stage 1 of 1 is ... epoch 10 ...
        """
        late = [
            (i, e)
            for i, (e, _) in enumerate(self.stages)
            if i not in done and e > last_epoch
        ]
        if not late:
            return None
        index, epoch = late[0]
        reached = [
            self._amount(i)
            for i, (e, _) in enumerate(self.stages)
            if e <= last_epoch
        ]
        epochs = [e for e, _ in self.stages]
        where = (
            f"stage {index + 1} of {len(self.stages)} is scheduled at the "
            f"start of epoch {epoch} ({self.keys}: stages at epochs "
            f"{epochs}), after the run's last epoch ({last_epoch}: "
            f"`number_of_epochs`, the epoch counter's `limit`)"
        )
        fix = (
            f"Raise `number_of_epochs` to at least {self.stages[-1][0]} or "
            "schedule the stages earlier (`start_epoch`, `n_stages`, "
            "`every`, or `stages`)"
        )
        if not reached and not done:
            return (
                f"No pruning stage runs in this run: {where}. The model "
                f"stays unpruned; resume with more epochs to prune it. {fix}."
            )
        ends = reached[-1] if reached else "its stages done so far"
        raise ValueError(
            f"Pruning {where}. {len(late)} stage(s) "
            f"would never run and the model would end pruned to {ends} "
            f"instead of {self._amount(len(self.stages) - 1)}. {fix}."
        )

    def _amount(self, index):
        """Stage ``index``'s target as a percentage (and its own measure)."""
        measure = self.measures[index]
        return f"{self.stages[index][1]:.0%}" + (
            f" ({measure})" if measure else ""
        )

    def __repr__(self):
        if any(self.measures):
            return f"PruningSchedule({self.stages}, measures={self.measures})"
        return f"PruningSchedule({self.stages})"


def check_fraction(value, key):
    """A fraction strictly between 0 and 1, or a clear error naming ``key``.

    Example
    -------
    >>> check_fraction(0.3, "target")
    0.3
    >>> check_fraction(1.0, "target")
    Traceback (most recent call last):
    ...
    ValueError: `target` must lie strictly between 0 and 1 (...), got 1.0
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{key}` must be a number, got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"`{key}` must lie strictly between 0 and 1 (a fraction to "
            f"remove), got {value}"
        )
    return value
