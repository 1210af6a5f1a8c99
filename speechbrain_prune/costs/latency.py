"""Measured latency vs width: the cost model for devices where MACs mislead.

On a GPU, an RNN's latency is bound by its sequential time steps, so
narrowing it saves far fewer milliseconds than its MACs suggest, while
removing a whole layer saves many. A latency table records, once per
model and device, the forward latency of the whole model when each
prunable group alone is narrowed to a few widths, and when each removable
RNN layer or DNN block alone is removed. :class:`LatencyModel` reads it:
the latency of a pruned model is estimated as the base latency plus the
change of each group at its width (interpolated linearly), and the cost of
one more channel of a group is the slope of its curve at its width. The
:class:`~speechbrain_prune.selection.Selector` uses it with
``cost: latency`` or ``target_type: latency``.

Build the table with the command, stored beside the recipe::

    python -m speechbrain_prune.costs.latency hparams/train.yaml \\
        --modules enc ctc_lin --input-shape 16 1000 40 --device cuda \\
        --out hparams/latency_cuda.json

``--modules`` names the entries of the YAML's ``modules`` that one forward
chains (each one's output is the next one's input); group ids in the table
are those of a root holding these modules under these names, as the
``Pruner`` sees ``brain.modules``.

Authors
 * speechbrain-prune team 2026
"""

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
from tqdm import tqdm

from speechbrain_prune.graph import discover_groups
from speechbrain_prune.graph.depth import depth_candidates
from speechbrain_prune.graph.group import PRODUCER
from speechbrain_prune.surgery.prune import apply_removals

DEFAULT_FRACTIONS = (0.75, 0.5, 0.25)

#: Widths at which latency jumps: cuDNN runs LSTM/GRU layers of 192 hidden
#: units and fewer with another algorithm (PyTorch's ``get_algo``; not
#: timed in this repository). Tables measured on a CUDA device measure
#: both sides of each (192, and 200 above it) for torch RNN layers.
DEFAULT_WIDTH_STEPS = (192,)


def default_width_steps(device):
    """The steps a table measured on ``device`` takes by default: cuDNN's
    (:data:`DEFAULT_WIDTH_STEPS`) on CUDA, none elsewhere.

    Example
    -------
    >>> default_width_steps("cpu"), default_width_steps("cuda:0")
    ((), (192,))
    """
    cuda = torch.device(device).type == "cuda"
    return DEFAULT_WIDTH_STEPS if cuda else ()


def table_widths(size, fractions=DEFAULT_FRACTIONS, floor=1, steps=()):
    """The widths below ``size`` a latency table measures for a group.

    One per fraction of ``size`` (a multiple of 8 for groups of 64 or more
    channels: odd widths run slower, a table of them would mislead), and
    both sides of every step ``w`` in ``steps``, so that a selection
    restricted to measured widths (``round_to: table``) sees the step
    instead of a line across it: ``w`` and the next width above it,
    ``w + 1``, or for groups of 64 or more the next multiple of 8 (an odd
    width may itself be slow, and as curves never decrease with width, a
    slow probe would raise the times of every wider width).

    Example
    -------
    >>> table_widths(8)
    [2, 4, 6]
    >>> table_widths(512, steps=(192,))
    [128, 192, 200, 256, 384]
    >>> table_widths(32, steps=(12,))
    [8, 12, 13, 16, 24]
    >>> table_widths(100, fractions=(0.33,))
    [32]
    """
    out = set()
    for f in fractions:
        w = f * size
        w = 8 * round(w / 8) if size >= 64 else round(w)
        out.add(max(floor, int(w)))
    for step in steps:
        above = 8 * (step // 8 + 1) if size >= 64 else step + 1
        out.update(w for w in (step, above) if floor <= w)
    return sorted(w for w in out if w < size)


def group_table_widths(root, group, fractions=DEFAULT_FRACTIONS, steps=()):
    """The widths below its size a latency table measures for ``group`` of
    ``root``: :func:`table_widths` above the group's floor, with ``steps``
    only where the group runs a torch RNN (:func:`has_torch_rnn`).

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> x = torch.rand(1, 5, 4)
    >>> net = sb.nnet.containers.Sequential(input_shape=x.shape)
    >>> net.append(sb.nnet.RNN.GRU, hidden_size=16, layer_name="rnn")
    >>> net.append(sb.nnet.linear.Linear, n_neurons=2)
    >>> group = discover_groups(net, x)["rnn.layer0"]
    >>> group_table_widths(net, group, steps=(6,))
    [4, 6, 7, 8, 12]
    """
    floor = max(1, getattr(group, "min_size", 1))
    steps = steps if has_torch_rnn(root, group) else ()
    return table_widths(group.size, fractions, floor, steps)


def has_torch_rnn(root, group):
    """Whether a module of ``group`` runs a torch RNN (``nn.RNNBase``:
    LSTM, GRU, RNN), the layers cuDNN runs with the kernel that
    :data:`DEFAULT_WIDTH_STEPS` are about. SpeechBrain's LiGRU computes its
    recurrence in Python, without such a step.

    Example
    -------
    >>> import speechbrain as sb
    >>> from speechbrain_prune.graph import discover_groups
    >>> x = torch.rand(1, 5, 4)
    >>> for cls in (sb.nnet.RNN.GRU, sb.nnet.RNN.LiGRU):
    ...     net = sb.nnet.containers.Sequential(input_shape=x.shape)
    ...     net.append(cls, hidden_size=6, num_layers=1, layer_name="rnn")
    ...     net.append(sb.nnet.linear.Linear, n_neurons=2)
    ...     group = discover_groups(net, x)["rnn.layer0"]
    ...     print(cls.__name__, has_torch_rnn(net, group))
    GRU True
    LiGRU False
    """
    for name in {m.module for m in group.members if m.role == PRODUCER}:
        module = root.get_submodule(name) if name else root
        if any(isinstance(m, torch.nn.RNNBase) for m in module.modules()):
            return True
    return False


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_of(root):
    for p in root.parameters():
        return p.device
    return torch.device("cpu")


def measure_latency(root, run, repeats=10, warmup=2):
    """Median seconds of one forward pass ``run(root)`` (eval, no grad).

    Arguments
    ---------
    root : torch.nn.Module
        Model or ``ModuleDict`` of a recipe's modules.
    run : callable or torch.Tensor
        One forward pass, or an input of ``root``.
    repeats : int
        Timed runs (the median is returned).
    warmup : int
        Untimed runs first (allocator, cuDNN autotuning).

    Returns
    -------
    float

    Example
    -------
    >>> net = torch.nn.Linear(4, 4)
    >>> measure_latency(net, torch.rand(2, 4), repeats=3) > 0
    True
    """
    if isinstance(run, torch.Tensor):
        x = run

        def run(m):
            return m(x)

    device = _device_of(root)
    was_training = root.training
    root.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                _sync(device)
                start = time.perf_counter()
                run(root)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        root.train(was_training)
    return statistics.median(times)


def latency_ratio(
    reference, model, run, repeats=10, warmup=2, rounds=3, measure=None
):
    """Latency of ``model`` over that of ``reference``, timed side by side.

    The two are timed alternately ``rounds`` times (``repeats`` runs each,
    median), and the ratio of the medians is returned: slow drifts of the
    device (clocks, other work) cancel. ``measure`` replaces
    :func:`measure_latency` (same arguments).

    Example
    -------
    >>> small, big = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    >>> x = torch.rand(64, 8)
    >>> latency_ratio(big, small, x, repeats=3, warmup=1, rounds=1) > 0
    True
    """
    measure = measure or measure_latency
    pairs = [
        (
            measure(reference, run, repeats, warmup),
            measure(model, run, repeats, warmup),
        )
        for _ in range(max(1, rounds))
    ]
    ref = statistics.median(p[0] for p in pairs)
    return statistics.median(p[1] for p in pairs) / ref


def describe_device(device):
    """A readable name of ``device`` for the table.

    Example
    -------
    >>> describe_device("cpu").startswith("cpu")
    True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def build_latency_table(
    root,
    groups,
    run,
    fractions=DEFAULT_FRACTIONS,
    repeats=10,
    warmup=2,
    depth=True,
    rounds=3,
    measure=None,
    progress=False,
    steps=(),
    widths=None,
):
    """Latency of ``root`` with each group alone narrowed, and each layer
    or block alone removed.

    Arguments
    ---------
    root : torch.nn.Module
        The model on the target device.
    groups : GroupSet
        Its groups (only prunable ones are measured).
    run : callable or torch.Tensor
        One forward pass at the batch size and length that matter.
    fractions : sequence of float
        Widths measured, as fractions of each group's size.
    repeats, warmup : int
        Per measurement, see :func:`measure_latency`.
    depth : bool
        Also measure the removal of each removable RNN layer / DNN block.
    rounds : int
        Each variant is timed ``rounds`` times, alternating with the
        unpruned model; the table holds the base latency times the ratio
        of the medians, which cancels slow drifts of the device (clocks,
        other work). GPU timings of small batches are noisy: use several
        rounds and enough repeats.
    measure : callable, optional
        ``measure(model, run, repeats, warmup) -> seconds``; by default
        :func:`measure_latency`. Tests give a deterministic cost here.
    progress : bool
        Show a progress bar (one step per measured group).
    steps : sequence of int
        Widths where an RNN layer's latency is known to jump (e.g.
        :data:`DEFAULT_WIDTH_STEPS`, cuDNN's kernel switch): measured on
        both sides for the groups of torch RNN layers (see
        :func:`table_widths`, :func:`has_torch_rnn`); LiGRU, conv and
        dense groups take the fractions only.
    widths : dict, optional
        ``group id -> widths`` measured for the groups it names, instead
        of the fractions and steps (e.g. only the narrowest width a
        selection may keep, all a check of the target needs); ``[]``
        measures none.

    Returns
    -------
    dict
        Plain data: ``device``, ``base_seconds``, ``groups`` (``id ->
        {"widths": [...], "seconds": [...]}``, widths increasing) and
        ``depth`` (``candidate name -> seconds without it``).

    Example
    -------
    >>> import speechbrain as sb
    >>> model = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=8, input_size=4),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=8))
    >>> x = torch.rand(1, 5, 4)
    >>> table = build_latency_table(model, discover_groups(model, x), x,
    ...                             repeats=2, depth=False)
    >>> table["groups"]["0"]["widths"]
    [2, 4, 6, 8]
    """
    measure = measure or measure_latency
    base = measure(root, run, repeats, warmup)

    def timed(variant):
        ratio = latency_ratio(
            root, variant, run, repeats, warmup, rounds, measure=measure
        )
        return base * ratio

    table = {
        "device": describe_device(_device_of(root)),
        "base_seconds": base,
        "groups": {},
        "depth": {},
    }
    bar = tqdm(
        total=len(groups.prunable()),
        desc="Latency table",
        unit="group",
        disable=not progress,
    )
    for group in groups.prunable():
        if widths is not None and group.id in widths:
            floor = max(1, getattr(group, "min_size", 1))
            at = sorted({int(w) for w in widths[group.id]})
            at = [w for w in at if floor <= w < group.size]
        else:
            at = group_table_widths(root, group, fractions, steps)
        seconds = []
        for w in at:
            clone = copy.deepcopy(root)
            g = copy.deepcopy(group)
            apply_removals(clone, {g.id: g}, {g.id: list(range(w, g.size))})
            seconds.append(timed(clone))
        table["groups"][group.id] = {
            "widths": at + [group.size],
            "seconds": seconds + [base],
        }
        bar.update()
    bar.close()
    if depth:
        for cand in depth_candidates(root):
            clone = copy.deepcopy(root)
            cand.apply(clone)
            table["depth"][cand.name] = timed(clone)
    return table


def save_latency_table(table, path):
    """Writes the table as JSON.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "latency.json")
    >>> save_latency_table({"base_seconds": 0.1, "groups": {}}, path)
    >>> load_latency_table(path)["base_seconds"]
    0.1
    """
    with open(path, "w") as f:
        json.dump(table, f, indent=1)


def load_latency_table(path):
    """Reads a table written by :func:`save_latency_table`."""
    with open(path) as f:
        return json.load(f)


class LatencyModel:
    """Latency estimates from a table (additive over groups).

    Each curve is made non-decreasing in width first (a narrower layer is
    never slower; measured noise could say otherwise).

    Arguments
    ---------
    table : dict
        From :func:`build_latency_table`.

    Example
    -------
    >>> table = {"base_seconds": 1.0, "depth": {}, "groups": {
    ...     "a": {"widths": [2, 4], "seconds": [0.6, 1.0]}}}
    >>> model = LatencyModel(table)
    >>> round(model.estimate({"a": 3}), 3), round(model.channel_cost("a", 4), 3)
    (0.8, 0.2)
    """

    def __init__(self, table):
        self.table = table
        self.base = float(table["base_seconds"])
        self.curves = {}
        for gid, entry in table["groups"].items():
            widths = [int(w) for w in entry["widths"]]
            seconds = [float(s) for s in entry["seconds"]]
            pairs = sorted(zip(widths, seconds))
            monotone, best = [], 0.0
            for w, s in pairs:
                best = max(best, s)
                monotone.append((w, best))
            self.curves[gid] = monotone
        self.depth = dict(table.get("depth", {}))

    @classmethod
    def from_any(cls, table):
        """From a table, a path to one, or a model (returned as is)."""
        if isinstance(table, cls):
            return table
        if isinstance(table, (str, os.PathLike)):
            table = load_latency_table(table)
        return cls(table)

    def _curve(self, gid):
        if gid not in self.curves:
            raise KeyError(
                f"The latency table has no group {gid!r}; rebuild it for "
                "this model (`python -m speechbrain_prune.costs.latency`)"
            )
        return self.curves[gid]

    def widths(self, gid):
        """The widths measured for group ``gid``, increasing (its full
        width last)."""
        return [w for w, _ in self._curve(gid)]

    def seconds_at(self, gid, width):
        """Model latency with group ``gid`` alone at ``width``."""
        curve = self._curve(gid)
        if width >= curve[-1][0]:
            return curve[-1][1]
        if width < curve[0][0] and len(curve) > 1:
            # Below the narrowest measured width: the first slope goes on.
            (w0, s0), (w1, s1) = curve[0], curve[1]
            return max(s0 - (w0 - width) * (s1 - s0) / (w1 - w0), 0.0)
        lo = curve[0]
        for hi in curve:
            if hi[0] >= width:
                if hi[0] == lo[0]:
                    return hi[1]
                t = (width - lo[0]) / (hi[0] - lo[0])
                return lo[1] + t * (hi[1] - lo[1])
            lo = hi
        return curve[-1][1]

    def estimate(self, widths):
        """Latency with every group in ``widths`` (``id -> width``)."""
        total = self.base
        for gid, w in widths.items():
            full = self._curve(gid)[-1][0]
            total += self.seconds_at(gid, w) - self.seconds_at(gid, full)
        return total

    def channel_cost(self, gid, width):
        """Seconds one more channel of ``gid`` saves at ``width``."""
        if width <= 1:
            return 0.0
        return max(
            self.seconds_at(gid, width) - self.seconds_at(gid, width - 1), 0.0
        )

    def depth_saving(self, name):
        """Seconds removing depth candidate ``name`` saves."""
        if name not in self.depth:
            raise KeyError(f"The latency table has no depth entry {name!r}")
        return max(self.base - float(self.depth[name]), 0.0)


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m speechbrain_prune.costs.latency",
        description="Measure a latency table (per-group latency vs width, "
        "and per removable layer) for cost-aware selection.",
    )
    p.add_argument("hparams", help="the recipe's YAML file")
    p.add_argument(
        "--modules",
        nargs="+",
        required=True,
        help="entries of the YAML's `modules` one forward chains, in order",
    )
    p.add_argument(
        "--input-shape",
        nargs="+",
        type=int,
        default=[16, 1000, 40],
        help="shape of the random input of the first module",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS)
    )
    p.add_argument(
        "--steps",
        nargs="*",
        type=int,
        default=None,
        help="widths where an RNN layer's latency jumps: measured on both "
        "sides (default: 192 on cuda, none elsewhere)",
    )
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-depth", action="store_true")
    p.add_argument(
        "--overrides", default="", help="YAML overrides of the hparams"
    )
    p.add_argument(
        "--out",
        default=None,
        help="JSON output (default: latency_<device>.json beside the YAML)",
    )
    return p.parse_args(argv)


def main(argv=None):
    """The command: builds and stores a latency table for a recipe."""
    from hyperpyyaml import load_hyperpyyaml

    args = _parse(argv)
    with open(args.hparams) as f:
        hparams = load_hyperpyyaml(f, args.overrides or None)
    modules = hparams.get("modules", hparams)
    missing = [m for m in args.modules if m not in modules]
    if missing:
        raise SystemExit(
            f"--modules {missing} are not in the YAML's `modules` "
            f"({sorted(modules)})"
        )
    device = torch.device(args.device)
    root = torch.nn.ModuleDict({k: modules[k] for k in args.modules})
    root = root.to(device).eval()
    x = torch.rand(*args.input_shape, device=device)

    def run(r):
        out = x
        for k in args.modules:
            out = r[k](out)
            while isinstance(out, (tuple, list)):
                out = out[0]
        return out

    groups = discover_groups(root, run)
    table = build_latency_table(
        root,
        groups,
        run,
        fractions=args.fractions,
        repeats=args.repeats,
        warmup=args.warmup,
        depth=not args.no_depth,
        rounds=args.rounds,
        steps=default_width_steps(device) if args.steps is None else args.steps,
    )
    table["input_shape"] = list(args.input_shape)
    table["modules"] = list(args.modules)
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(args.hparams)),
        f"latency_{device.type}.json",
    )
    save_latency_table(table, out)
    print(
        f"{len(table['groups'])} groups, {len(table['depth'])} depth "
        f"candidates, base {1000 * table['base_seconds']:.2f} ms on "
        f"{table['device']}: {out}"
    )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
