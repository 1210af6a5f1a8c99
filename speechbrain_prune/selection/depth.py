"""Depth selection: which whole RNN layers and blocks go, under a budget.

Authors
 * speechbrain-prune team 2026
"""

import copy
import itertools
import math

import torch

from speechbrain_prune.costs.latency import LatencyModel
from speechbrain_prune.costs.macs import count_macs, count_params
from speechbrain_prune.graph.depth import DepthCandidate, depth_candidates
from speechbrain_prune.scorers.base import ScoreError
from speechbrain_prune.selection.constraints import (
    SelectionError,
    require_fraction,
    require_one_of,
)

__all__ = ["DepthCandidate", "depth_candidates", "depth_scores", "select_depth"]


def depth_scores(
    root, candidates, batches, loss_fn, n_batches=4, signed=False, seed=0
):
    """Loss increase when each candidate alone is removed (exact).

    Each removal is made in place, measured on the same batches in eval
    mode and taken back, so ``loss_fn`` may hold the recipe's modules.

    Returns
    -------
    dict
        ``candidate name -> |mean loss change|`` (signed with ``signed``).

    Example
    -------
    >>> import speechbrain as sb
    >>> net = sb.nnet.RNN.LSTM(4, input_size=4, num_layers=2)
    >>> root = torch.nn.ModuleDict({"rnn": net})
    >>> cands = depth_candidates(root)
    >>> loss_fn = lambda x: root.rnn(x)[0].pow(2).mean()
    >>> scores = depth_scores(root, cands, [torch.rand(2, 5, 4)], loss_fn)
    >>> list(scores), net.rnn.num_layers
    (['rnn:0', 'rnn:1'], 2)
    """
    from speechbrain_prune.scorers.state import restored, scoring_state, seeded

    kept = list(itertools.islice(iter(batches), n_batches))
    if not kept:
        raise ValueError("depth_scores got no batches")

    def losses():
        out = []
        for b, batch in enumerate(kept):
            with torch.no_grad(), seeded(seed + b):
                loss = loss_fn(batch)
            if not torch.isfinite(loss):
                raise ScoreError(f"The loss is {loss.item()} at batch {b}")
            out.append(float(loss))
        return torch.tensor(out, dtype=torch.float64)

    scores = {}
    with scoring_state(root, eval_mode=True):
        base = losses()
        for cand in candidates:
            with restored([cand.target(root)]):
                cand.apply(root)
                delta = float((losses() - base).mean())
            scores[cand.name] = delta if signed else abs(delta)
    return scores


def select_depth(
    root,
    candidates,
    scores,
    run=None,
    target=0.3,
    target_type="macs",
    latency_table=None,
    cost_aware=True,
):
    """Whole layers and blocks to remove so that ``target`` is saved.

    Candidates are ranked by loss increase (``scores``, e.g. from
    :func:`depth_scores`) per unit saved (``cost_aware``), or by loss
    increase alone, and taken greedily; each set is applied to a copy and
    measured (MACs or parameters exactly, latency from the table's depth
    entries, taken as additive), and a candidate that can no longer be
    removed once others are gone is skipped.

    Returns
    -------
    list of DepthCandidate
        In the order to apply them (layers of one RNN from the last).

    Example
    -------
    >>> from speechbrain.lobes.models.CRDNN import CRDNN
    >>> model = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4],
    ...               rnn_layers=3, rnn_neurons=4, dnn_blocks=2,
    ...               dnn_neurons=8).eval()
    >>> x = torch.rand(1, 50, 20)
    >>> cands = depth_candidates(model)
    >>> scores = {"RNN:1": 0.5, "RNN:2": 0.2, "DNN.block_0": 0.3,
    ...           "DNN.block_1": 0.1}
    >>> chosen = select_depth(model, cands, scores, run=x, target=0.02)
    >>> [c.name for c in chosen]
    ['RNN:2']
    """
    require_one_of("target_type", target_type, ("macs", "params", "latency"))
    require_fraction("target", target)
    latency = None
    if target_type == "latency":
        if latency_table is None:
            raise SelectionError("A latency target needs `latency_table`")
        latency = LatencyModel.from_any(latency_table)
    if target_type == "macs" and run is None:
        raise SelectionError("MAC targets need `run` to count MACs")

    def measure(model):
        if target_type == "macs":
            return count_macs(model, run=run)
        return count_params(model)

    def ordered(chosen):
        return sorted(
            chosen,
            key=lambda c: (c.kind != "rnn_layer", c.module, -(c.layer or 0)),
        )

    def saved(chosen):
        if latency is not None:
            total = sum(latency.depth_saving(c.name) for c in chosen)
            return total / latency.base
        clone = copy.deepcopy(root)
        for c in ordered(chosen):
            c.apply(clone)
        return (base - measure(clone)) / base

    base = None if latency is not None else measure(root)
    missing = [c.name for c in candidates if c.name not in scores]
    if missing:
        raise SelectionError(f"No depth score for {missing}")
    priority = {}
    for c in candidates:
        gain = saved([c])
        if cost_aware:
            priority[c.name] = scores[c.name] / gain if gain > 0 else math.inf
        else:
            priority[c.name] = scores[c.name]
    chosen, achieved = [], 0.0
    for c in sorted(candidates, key=lambda c: (priority[c.name], c.name)):
        if achieved >= target:
            break
        if math.isinf(priority[c.name]):
            continue
        try:
            trial = saved(chosen + [c])
        except (ValueError, TypeError):
            continue  # no longer removable once the others are gone
        chosen.append(c)
        achieved = trial
    if achieved < target:
        raise SelectionError(
            f"Removing every depth candidate saves {achieved:.1%} of the "
            f"{target_type}, less than `target` {target:.1%}; lower it or "
            "prune channels as well"
        )
    return ordered(chosen)
