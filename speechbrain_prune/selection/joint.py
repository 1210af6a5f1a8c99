"""Width and depth in one ranking: which layers go, then which channels.

A stage may meet its target by narrowing layers, by removing whole RNN
layers or DNN blocks, or by both. Which is cheaper depends on the model
and on the device: on a CPU narrowing pays about as much as the MACs it
removes, on a GPU at small batch an RNN's time is bound by its sequential
steps and only fewer layers are faster. Channel scores (Taylor,
activation, ...) and the loss a removed layer costs are not in the same
units, so they are compared where they meet: in the loss of the pruned
candidate.

:func:`choose_depth_and_width` ranks the depth candidates by the loss
each costs per unit of the target's currency it saves (a knapsack in the
spirit of HALP, Shen et al., NeurIPS 2022), and for every prefix of that
ranking (no layer, the best layer, the best two, ...) lets the channel
selection meet the rest of the target; each such candidate is built on a
copy and its loss measured exactly on the same batches. The candidate with
the lowest loss wins (fewer removed layers on a tie). A
:class:`PruningChoice` records it and applies it to the live model.

Authors
 * speechbrain-prune team 2026
"""

import copy
import fnmatch

from speechbrain_prune.costs.latency import LatencyModel
from speechbrain_prune.graph.depth import depth_candidates
from speechbrain_prune.selection.constraints import SelectionError
from speechbrain_prune.surgery.ledger import SliceLedger
from speechbrain_prune.surgery.prune import (
    apply_removals,
    remove_block,
    remove_rnn_layer,
)
from speechbrain_prune.utils import copy_module

__all__ = [
    "PruningChoice",
    "allowed_depth_candidates",
    "choose_depth_and_width",
    "latency_cost_ratio",
    "ordered_depth",
    "table_without",
]


def latency_cost_ratio(table):
    """``cost_ratio(model, depth)`` from a latency table's depth entries.

    The latency left when the candidates ``depth`` are removed, over the
    table's base latency (removals taken as additive).

    Example
    -------
    >>> from speechbrain_prune.graph.depth import DepthCandidate
    >>> table = {"base_seconds": 2.0, "groups": {}, "depth": {"RNN:1": 1.5}}
    >>> ratio = latency_cost_ratio(table)
    >>> ratio(None, [DepthCandidate("rnn_layer", "RNN", 1)])
    0.75
    """
    latency = LatencyModel(table)

    def cost_ratio(model, depth):
        saved = sum(latency.depth_saving(c.name) for c in depth)
        return 1.0 - saved / latency.base

    return cost_ratio


def table_without(table, depth):
    """The latency table of the model without the candidates ``depth``.

    Its base is the table's estimate of that model's latency, and it has
    no depth entries. The channel curves follow their layers: a removed
    RNN layer's curve goes, and the layers after it, renumbered in the
    model (``RNN.layer2`` is ``RNN.layer1`` once layer 1 goes), take
    their own curves under their new names (layers of one RNN may have
    been pruned to different widths by earlier stages); a removed block's
    curves go. Groups it has no curve for are left out of selection by
    :class:`~speechbrain_prune.selection.Selector`'s caller.

    Example
    -------
    >>> from speechbrain_prune.graph.depth import DepthCandidate
    >>> table = {"base_seconds": 2.0, "depth": {"RNN:1": 1.5}, "groups": {
    ...     f"RNN.layer{k}": {"widths": [k + 1], "seconds": [2.0]}
    ...     for k in range(3)}}
    >>> out = table_without(table, [DepthCandidate("rnn_layer", "RNN", 1)])
    >>> out["base_seconds"], out["depth"]
    (1.5, {})
    >>> {gid: e["widths"] for gid, e in out["groups"].items()}
    {'RNN.layer0': [1], 'RNN.layer1': [3]}
    """
    if not depth:
        return table
    latency = LatencyModel(table)
    saved = sum(latency.depth_saving(c.name) for c in depth)
    groups = dict(table["groups"])
    # From the last layer of each RNN: the names of the rest stay valid.
    for cand in ordered_depth(depth):
        if cand.kind != "rnn_layer":
            inside = cand.module + "."
            groups = {
                g: e for g, e in groups.items() if not g.startswith(inside)
            }
            continue
        prefix = f"{cand.module}.layer"
        layers = sorted(
            int(g[len(prefix) :])
            for g in groups
            if g.startswith(prefix) and g[len(prefix) :].isdigit()
        )
        groups.pop(f"{prefix}{cand.layer}", None)
        for k in layers:
            if k > cand.layer:
                groups[f"{prefix}{k - 1}"] = groups.pop(f"{prefix}{k}")
    return dict(
        table, base_seconds=latency.base - saved, groups=groups, depth={}
    )


def ordered_depth(candidates):
    """Depth candidates in an order that keeps every later name valid.

    Blocks go after RNN layers, and layers of one RNN from the last, so
    that removing one does not renumber another that is still to go.

    Example
    -------
    >>> from speechbrain_prune.graph.depth import DepthCandidate
    >>> cands = [DepthCandidate("rnn_layer", "RNN", 1),
    ...          DepthCandidate("block", "DNN.block_0"),
    ...          DepthCandidate("rnn_layer", "RNN", 2)]
    >>> [c.name for c in ordered_depth(cands)]
    ['RNN:2', 'RNN:1', 'DNN.block_0']
    """
    return sorted(
        candidates,
        key=lambda c: (c.kind != "rnn_layer", c.module, -(c.layer or 0)),
    )


def allowed_depth_candidates(root, protect=()):
    """Depth candidates of ``root`` that no ``protect`` pattern covers.

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> model = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...               rnn_layers=3, rnn_neurons=4, dnn_blocks=2,
    ...               dnn_neurons=8)
    >>> [c.name for c in allowed_depth_candidates(model, ["DNN.*"])]
    ['RNN:1', 'RNN:2']
    """
    if isinstance(protect, str):
        protect = [protect]
    out = []
    for cand in depth_candidates(root):
        names = [cand.module, cand.name]
        if any(fnmatch.fnmatchcase(n, p) for p in protect for n in names):
            continue
        out.append(cand)
    return out


class PruningChoice:
    """What a stage removes: whole layers and blocks, then channels.

    Arguments
    ---------
    depth : list of DepthCandidate
        Removed first (names of the model before the stage).
    groups : GroupSet, optional
        Groups of the model *after* the depth removals, which ``removals``
        refers to.
    removals : dict, optional
        ``group id -> removed channels`` of those groups.

    Example
    -------
    >>> import torch
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> net = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> groups = discover_groups(net, torch.rand(1, 4, 3))
    >>> choice = PruningChoice([], groups, {"0": [1, 4]})
    >>> _ = choice.apply(net)
    >>> net(torch.rand(1, 4, 3)).shape, choice.describe()
    (torch.Size([1, 4, 2]), 'no layer removed, 2 channels')
    """

    def __init__(self, depth=(), groups=None, removals=None):
        self.depth = ordered_depth(list(depth))
        self.groups = groups
        self.removals = {
            gid: r for gid, r in (removals or {}).items() if len(r)
        }

    @property
    def n_channels(self):
        """Channels removed in all."""
        return sum(len(r) for r in self.removals.values())

    def describe(self):
        """One line: which layers, how many channels."""
        layers = ", ".join(c.name for c in self.depth) or "no layer removed"
        return f"{layers}, {self.n_channels} channels"

    def apply(self, root, plan=None, ledger=None):
        """Removes the layers, then the channels, from ``root``.

        With ``plan`` (a :class:`~speechbrain_prune.plan.PruningPlan`)
        every step is recorded. The choice can be applied more than once
        (to copies): its groups are not changed.

        Returns
        -------
        SliceLedger
            Where every new parameter came from.
        """
        ledger = SliceLedger() if ledger is None else ledger
        for cand in self.depth:
            if cand.kind == "rnn_layer":
                if plan is not None:
                    plan.remove_rnn_layer(root, cand.module, cand.layer, ledger)
                else:
                    remove_rnn_layer(root, cand.module, cand.layer, ledger)
            elif plan is not None:
                plan.remove_block(root, cand.module)
            else:
                remove_block(root, cand.module)
        if self.removals:
            groups = copy.deepcopy(self.groups)
            if plan is not None:
                plan.prune(root, groups, self.removals, ledger)
            else:
                apply_removals(root, groups, self.removals, ledger)
        return ledger

    def __repr__(self):
        return f"PruningChoice({self.describe()})"


def choose_depth_and_width(
    root, candidates, keep_ratio, cost_ratio, width_choice, loss_of
):
    """The least damaging mix of removed layers and channels.

    Arguments
    ---------
    root : torch.nn.Module
        The current model (a copy may be passed; it is not changed).
    candidates : list of DepthCandidate
        Layers and blocks that may go (:func:`allowed_depth_candidates`).
    keep_ratio : float
        The target: cost after the stage over the current cost, in (0, 1).
    cost_ratio : callable
        ``cost_ratio(model, depth)``: cost of ``model`` (``root`` with the
        candidates ``depth`` removed) over the current cost.
    width_choice : callable
        ``width_choice(model, fraction, depth) -> (groups, removals)``: the
        channel selection removing ``fraction`` of ``model``'s own cost
        (``model`` is ``root`` without the candidates ``depth``); raises
        :class:`SelectionError` when the constraints cannot.
    loss_of : callable
        ``loss_of(model) -> float``: the loss of a candidate, measured the
        same way for every candidate (eval mode, the same batches).

    Returns
    -------
    choice : PruningChoice
        The winner.
    report : list of dict
        One row per candidate mix tried: ``depth`` (names), ``channels``,
        ``cost`` (estimated ratio), ``loss`` (None when infeasible) and
        ``note``.

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> from speechbrain_prune.costs import count_params
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.selection import Selector
    >>> torch.manual_seed(0) and None
    >>> model = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...               rnn_layers=3, rnn_neurons=8, dnn_blocks=1,
    ...               dnn_neurons=8).eval()
    >>> x = torch.rand(2, 30, 20)
    >>> base = count_params(model)
    >>> def cost_ratio(m, depth):
    ...     return count_params(m) / base
    >>> def width_choice(m, fraction, depth):
    ...     groups = discover_groups(m, x)
    ...     scores = {g: torch.rand(groups[g].size) for g in groups}
    ...     sel = Selector(target=fraction, target_type="params")
    ...     return groups, sel.select(m, groups, scores, run=x)
    >>> def loss_of(m):  # a loss that does not care about depth
    ...     return 0.0
    >>> choice, report = choose_depth_and_width(
    ...     model, depth_candidates(model), 0.6, cost_ratio, width_choice,
    ...     loss_of)
    >>> [row["depth"] for row in report][:2]
    [[], ['RNN:1']]
    >>> choice.depth  # a tie: fewer layers removed wins
    []
    """
    if not 0.0 < keep_ratio < 1.0:
        raise SelectionError(f"keep ratio {keep_ratio} is not in (0, 1)")
    base_loss = loss_of(root)
    ranked = []
    for cand in candidates:
        trial = copy_module(root)
        try:
            cand.apply(trial)
        except (ValueError, TypeError):
            continue
        saved = 1.0 - cost_ratio(trial, [cand])
        if saved <= 0:
            continue
        damage = max(loss_of(trial) - base_loss, 0.0)
        ranked.append((damage / saved, cand.name, cand))
    ranked.sort(key=lambda t: (t[0], t[1]))

    report, best = [], None
    prefix = []
    for k in range(len(ranked) + 1):
        if k:
            prefix = prefix + [ranked[k - 1][2]]
        model = copy_module(root)
        try:
            for cand in ordered_depth(prefix):
                cand.apply(model)
        except (ValueError, TypeError):
            prefix = prefix[:-1]  # no longer removable with the others
            continue
        ratio = cost_ratio(model, prefix)
        row = {
            "depth": [c.name for c in ordered_depth(prefix)],
            "channels": 0,
            "cost": ratio,
            "loss": None,
            "note": "",
        }
        report.append(row)
        groups, removals = None, {}
        if ratio > keep_ratio:
            fraction = 1.0 - keep_ratio / ratio
            try:
                groups, removals = width_choice(model, fraction, prefix)
            except SelectionError as err:
                row["note"] = f"infeasible: {err}"
                continue
            choice = PruningChoice(prefix, groups, removals)
            apply_removals(model, copy.deepcopy(groups), choice.removals)
            row["channels"] = choice.n_channels
            row["cost"] = keep_ratio
        else:
            choice = PruningChoice(prefix)
        row["loss"] = float(loss_of(model))
        if best is None or row["loss"] < best[0] - 1e-12:
            best = (row["loss"], choice, row)
        if ratio <= keep_ratio:
            break  # more layers would only cost more
    if best is None:
        notes = "; ".join(r["note"] for r in report if r["note"])
        raise SelectionError(
            f"No mix of removed layers and channels keeps "
            f"{keep_ratio:.1%} of the cost: {notes}"
        )
    for row in report:
        row["chosen"] = row is best[2]
    return best[1], report
