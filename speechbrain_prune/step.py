"""One pruning step without a Brain: score, rank layers and channels, choose.

:class:`PruneStep` is what a pruning stage does between tracing the model
and the surgery, written against plain callables, so that the training
stages (:class:`~speechbrain_prune.training.Pruner`), the benchmarks and
the tests all run the same code:

- the channels of the current model are scored once (any
  :class:`~speechbrain_prune.scorers.Scorer`);
- without depth, the :class:`~speechbrain_prune.selection.Selector` meets
  the target on them;
- with depth, whole RNN layers and DNN blocks are ranked with the channels
  (:func:`~speechbrain_prune.selection.joint.choose_depth_and_width`): each
  mix is scored, selected and measured on its own copy, and the one with
  the lowest loss wins.

A step may be asked more than once (a latency stage corrects its fraction
after an end-to-end check): scores are computed once.

Authors
 * speechbrain-prune team 2026
"""

import torch

from speechbrain_prune.costs import count_cost, group_costs
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.selection import Selector
from speechbrain_prune.selection.joint import (
    PruningChoice,
    allowed_depth_candidates,
    choose_depth_and_width,
    latency_cost_ratio,
    table_without,
)
from speechbrain_prune.utils import copy_module

__all__ = ["PruneStep", "mean_loss", "prune_step", "stage_selector"]


def stage_selector(measure, selection, fraction, table=None):
    """The channel selector of a step: ``selection``'s options, counting
    ``fraction`` in ``measure`` (on ``table`` for latency).

    ``round_to: table`` (widths the latency table measured) holds for
    latency steps; steps of other measures have no table and keep every
    width.

    Example
    -------
    >>> stage_selector("params", {"round_to": 4}, 0.3).target_type
    'params'
    >>> stage_selector("macs", {"round_to": "table"}, 0.3).round_to
    1
    """
    options = dict(selection or {}, target_type=measure)
    if measure == "latency":
        options["latency_table"] = table
    elif options.get("round_to") == "table":
        options["round_to"] = 1
    return Selector(target=fraction, **options)


def mean_loss(loss_fn, batches, seed=0):
    """``loss_of(model)``: mean of ``loss_fn(model, batch)`` over
    ``batches`` in eval mode, without gradients, seeded per batch (the
    same random draws for every model) and averaged over DDP ranks.

    Example
    -------
    >>> net = torch.nn.Linear(2, 1)
    >>> loss_of = mean_loss(lambda m, b: m(b).pow(2).mean(),
    ...                     [torch.ones(3, 2)])
    >>> loss_of(net) == float(net(torch.ones(3, 2)).pow(2).mean())
    True
    """

    def loss_of(model):
        was_training = model.training
        model.eval()
        total = torch.zeros(2, dtype=torch.float64)
        try:
            with torch.no_grad():
                for b, batch in enumerate(batches):
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed + 7919 * b)
                        loss = loss_fn(model, batch)
                    total[0] += float(loss)
                    total[1] += 1
        finally:
            model.train(was_training)
        if (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            device = next(model.parameters()).device
            total = total.to(device)
            torch.distributed.all_reduce(total)
            total = total.cpu()
        return float(total[0] / max(float(total[1]), 1.0))

    return loss_of


class PruneStep:
    """``step(fraction, table=None) -> PruningChoice`` for one model.

    Arguments
    ---------
    root : torch.nn.Module
        The current model (not changed; scored in place, restored).
    run : callable
        ``run(model)``: one forward pass of ``model`` (or a copy of it) for
        tracing and counting.
    loss_fn : callable
        ``loss_fn(model, batch)``: the training loss through ``model``.
    batches : list
        Scoring batches (also those the loss of a mix is measured on).
    scorer : Scorer
        The criterion.
    measure : str
        ``params``, ``macs`` or ``latency``: what ``fraction`` counts.
    selection : dict, optional
        Options of :class:`~speechbrain_prune.selection.Selector`.
    depth : bool
        Rank whole layers and blocks with the channels.
    groups_of : callable, optional
        ``groups_of(model)``: the groups of a copy (default
        :func:`discover_groups` through ``run``).
    groups : GroupSet, optional
        The current model's groups, if already traced.
    make_selector : callable, optional
        ``make_selector(fraction, table)`` -> a Selector, instead of one
        built from ``measure`` and ``selection``.
    seed : int
        Seeds the loss measurement of mixes.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> from speechbrain_prune.costs import count_params
    >>> from speechbrain_prune.scorers import MagnitudeScorer
    >>> torch.manual_seed(0) and None
    >>> model = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...               rnn_layers=3, rnn_neurons=8, dnn_blocks=1,
    ...               dnn_neurons=8).eval()
    >>> x = torch.rand(2, 30, 20)
    >>> step = PruneStep(model, lambda m: m(x),
    ...                  lambda m, b: m(b).pow(2).mean(), [x],
    ...                  MagnitudeScorer(), measure="params", depth=True)
    >>> choice = step(0.4)
    >>> before = count_params(model)
    >>> _ = choice.apply(model)
    >>> count_params(model) <= 0.6 * before, len(step.report) >= 2
    (True, True)
    """

    def __init__(
        self,
        root,
        run,
        loss_fn,
        batches,
        scorer,
        measure="params",
        selection=None,
        depth=False,
        groups_of=None,
        groups=None,
        make_selector=None,
        seed=0,
    ):
        self.root = root
        self.run = run
        self.loss_fn = loss_fn
        self.batches = batches
        self.scorer = scorer
        self.measure = measure
        self.selection = dict(selection or {})
        self.groups_of = groups_of or (lambda m: discover_groups(m, run))
        self.seed = int(seed)
        self.make_selector = make_selector
        self.scratch = copy_module(root)
        if groups is None:
            groups = self.groups_of(copy_module(root))
        self.groups = groups
        self.candidates = []
        if depth:
            protect = self.selection.get("protect", ()) or ()
            self.candidates = allowed_depth_candidates(self.scratch, protect)
        self.report = []
        self._scores = None
        self._base_cost = None

    # Pieces ---------------------------------------------------------------
    def selector(self, fraction, table=None):
        """The channel selector for ``fraction`` of the measure."""
        if self.make_selector is not None:
            return self.make_selector(fraction, table)
        return stage_selector(self.measure, self.selection, fraction, table)

    def cost(self, model):
        """``model``'s cost in the measure (MACs or parameters), counted
        on a copy."""
        return count_cost(copy_module(model), self.measure, self.run)

    def score(self, model, groups):
        """Channel scores of ``model`` (the current model's are cached)."""
        if model is self.root and self._scores is not None:
            return self._scores
        scores = self.scorer.score(
            model, groups, self.batches, lambda b: self.loss_fn(model, b)
        )
        if model is self.root:
            self._scores = scores
        return scores

    def _unit_costs(self, model, groups):
        # Per-channel MACs take a forward per group: only when counted.
        cost = self.selection.get("cost") or self.measure
        if "macs" not in (self.measure, cost):
            return None
        return group_costs(copy_module(model), groups, self.run)

    def _width(self, model, groups, fraction, table, scores):
        selector = self.selector(fraction, table)
        if table is not None:
            # Groups the table has no curve for (renamed by an earlier
            # depth removal) keep their width.
            unknown = [
                g.id for g in groups.prunable() if g.id not in table["groups"]
            ]
            selector.protect = selector.protect + unknown
        return selector.select(
            copy_module(model),
            groups,
            scores,
            run=self.run,
            costs=self._unit_costs(model, groups),
        )

    def _exact_cost_ratio(self, model, depth):
        if self._base_cost is None:
            self._base_cost = self.cost(self.scratch)
        return self.cost(model) / self._base_cost

    # The step -------------------------------------------------------------
    def __call__(self, fraction, table=None):
        """What removes ``fraction`` of the current model's cost (of its
        latency on ``table`` for latency steps)."""
        if not self.candidates:
            scores = self.score(self.root, self.groups)
            removals = self._width(
                self.scratch, self.groups, fraction, table, scores
            )
            return PruningChoice([], self.groups, removals)
        if table is not None:
            cost_ratio = latency_cost_ratio(table)
        else:
            cost_ratio = self._exact_cost_ratio

        def width_choice(model, fraction, depth):
            if not depth:
                groups = self.groups
                scores = self.score(self.root, groups)
            else:
                groups = self.groups_of(copy_module(model))
                scores = self.score(model, groups)
            sub = None if table is None else table_without(table, depth)
            return groups, self._width(model, groups, fraction, sub, scores)

        choice, rows = choose_depth_and_width(
            copy_module(self.root),
            self.candidates,
            1.0 - fraction,
            cost_ratio,
            width_choice,
            mean_loss(self.loss_fn, self.batches, self.seed),
        )
        self.report[:] = rows
        return choice


def prune_step(root, run, loss_fn, batches, scorer, fraction, plan=None, **kw):
    """Chooses and removes ``fraction`` of ``root``'s cost in one step.

    Arguments are those of :class:`PruneStep` (``**kw``: ``measure``,
    ``selection``, ``depth``, ``groups_of``, ``seed``) plus the fraction;
    with ``plan`` (a :class:`~speechbrain_prune.plan.PruningPlan`) the
    removal is recorded.

    Returns
    -------
    choice : PruningChoice
    ledger : SliceLedger
        Where every new parameter came from (optimizer state follows it).

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.costs import count_params
    >>> from speechbrain_prune.scorers import MagnitudeScorer
    >>> net = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=8, input_size=4),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=8))
    >>> x = torch.rand(1, 5, 4)
    >>> choice, _ = prune_step(net, lambda m: m(x), None, [x],
    ...                        MagnitudeScorer(), 0.5)
    >>> net(x).shape, count_params(net) <= 0.5 * 58
    (torch.Size([1, 5, 2]), True)
    """
    choice = PruneStep(root, run, loss_fn, batches, scorer, **kw)(fraction)
    return choice, choice.apply(root, plan=plan)
