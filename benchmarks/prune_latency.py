"""Latency of randomly pruned CRDNNs: does a MAC cut become a speed-up?

For each model preset, the script builds the unpruned model and four
variants of it:

- ``width x0.70`` / ``width x0.50``: the same random fraction ``f`` of
  every prunable dependency group removed (seeded), ``f`` found by
  bisection so that the MACs are 70 % / 50 % of the original (within 1 %);
- ``3 RNN layers`` / ``2 RNN layers``: the last RNN layers removed (the
  first one cannot be: its input width differs from its output width).

MACs are counted on a short input (``--count-frames``) while bisecting, as
they are linear in time; the reported MACs are counted again at the timed
length and the two ratios are checked against each other. Latency is one
forward pass (model and output head) of ``--frames`` frames in eval mode
under ``torch.no_grad``: warm-up rounds, then rounds in which every
variant runs once, the order alternating between rounds (A B C .. C B A),
so that drift hits all of them alike. The latency ratio is the median over
rounds of ``variant / unpruned`` measured in the same round; the ratio of
the fastest runs is kept too (robust on a machine shared with other
work). ``--breakdown`` adds a pass that splits the time into CNN, RNN and
the rest. On the GPU, a setting that runs out of memory, or whose tensors
exceed 2^31 elements, is retried with half the frames (the ``note``
column says so).

Outputs (``--out``, file names ``prune_latency_<tag>``): ``.md`` (the
table, also printed), ``.csv`` and ``.png`` (latency ratio against MAC
ratio, one panel per model); ``--replot CSV`` redraws the last two.
BENCHMARKS.md at the repository root has the results and their reading.

Example
-------
``python benchmarks/prune_latency.py --device cpu --repeats 9``
``python benchmarks/prune_latency.py --device cuda --batch-sizes 16 512``
``python benchmarks/prune_latency.py --quick`` (tiny models, seconds)

Authors
 * speechbrain-prune team 2026
"""

import argparse
import contextlib
import copy
import csv
import gc
import os
import platform
import statistics
import sys
import time

import torch

from speechbrain_prune.cli import load_module
from speechbrain_prune.costs import count_macs, count_params
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.surgery import apply_removals, remove_rnn_layer

MODELS = {
    "timit_ctc": ("timit_ctc_crdnn", "TIMIT CTC"),
    "librispeech_enc": ("librispeech_seq2seq_crdnn_encoder", "LibriSpeech enc"),
}

# Tiny versions of the presets for a smoke test (--quick).
QUICK_OVERRIDES = {
    "n_mels": 20,
    "output_neurons": 10,
    "model": {
        "cnn_channels": (16, 32),
        "rnn_neurons": 64,
        "dnn_neurons": 64,
    },
    "output": {"input_size": 64},
}

MAC_TARGETS = (0.70, 0.50)
RNN_DEPTHS = (3, 2)
RNN_NAME = "model.RNN"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FIELDS = [
    "model",
    "device",
    "batch",
    "dtype",
    "frames",
    "variant",
    "params",
    "params_ratio",
    "gmacs_per_utt",
    "mac_ratio",
    "mac_ratio_count",
    "fraction",
    "latency_ms",
    "latency_ratio",
    "ratio_of_medians",
    "ratio_of_mins",
    "spread_pct",
    "runs",
    "cnn_ms",
    "rnn_ms",
    "other_ms",
    "note",
]


def forward(modules, x):
    """One forward pass of a recipe's ``model`` and ``output`` modules.

    Example
    -------
    >>> m = torch.nn.ModuleDict({"model": torch.nn.Identity(),
    ...                          "output": torch.nn.Linear(3, 2)})
    >>> forward(m, torch.rand(1, 4, 3)).shape
    torch.Size([1, 4, 2])
    """
    return modules["output"](modules["model"](x))


def build_model(name, quick=False):
    """Builds a preset's ``modules`` (eval mode) and its feature count.

    Arguments
    ---------
    name : str
        A key of ``MODELS`` or a preset name / YAML path.
    quick : bool
        Tiny widths (``QUICK_OVERRIDES``) for a smoke test.

    Returns
    -------
    modules : torch.nn.ModuleDict
    n_mels : int

    Example
    -------
    >>> m, n = build_model("timit_ctc", quick=True)
    >>> n, m["model"].RNN.hidden_size
    (20, 64)
    """
    preset = MODELS.get(name, (name, name))[0]
    modules, hparams = load_module(
        preset, "modules", QUICK_OVERRIDES if quick else None
    )
    return modules.eval(), hparams["n_mels"]


def random_orders(groups, seed):
    """A seeded random order of the channels of every prunable group.

    Removing the first ``n`` of an order gives nested removal sets, so the
    MACs fall monotonically with the fraction removed.

    Example
    -------
    >>> import speechbrain as sb
    >>> net = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> groups = discover_groups(net, torch.rand(1, 4, 3))
    >>> sorted(random_orders(groups, 0)["0"].tolist())
    [0, 1, 2, 3, 4, 5]
    """
    gen = torch.Generator().manual_seed(seed)
    return {
        g.id: torch.randperm(g.size, generator=gen) for g in groups.prunable()
    }


def removals_for(groups, orders, fraction):
    """The first ``round(fraction * size)`` channels of every order.

    Each group keeps at least its ``min_size`` channels.

    Example
    -------
    >>> import speechbrain as sb
    >>> net = sb.nnet.containers.Sequential(
    ...     sb.nnet.linear.Linear(n_neurons=6, input_size=3),
    ...     sb.nnet.linear.Linear(n_neurons=2, input_size=6))
    >>> groups = discover_groups(net, torch.rand(1, 4, 3))
    >>> len(removals_for(groups, random_orders(groups, 0), 0.5)["0"])
    3
    """
    out = {}
    for group in groups.prunable():
        n = min(group.size - group.min_size, int(round(fraction * group.size)))
        out[group.id] = orders[group.id][:n].sort()[0]
    return out


def prune_width(modules, groups, fraction, seed=0):
    """A pruned copy of ``modules``: ``fraction`` of every group removed.

    Example
    -------
    >>> m, n = build_model("timit_ctc", quick=True)
    >>> x = torch.rand(1, 40, n)
    >>> groups = discover_groups(m, lambda mm: forward(mm, x))
    >>> p = prune_width(m, groups, 0.5)
    >>> p["model"].RNN.hidden_size, m["model"].RNN.hidden_size
    (32, 64)
    """
    clone = copy.deepcopy(modules)
    g = copy.deepcopy(groups)
    apply_removals(clone, g, removals_for(g, random_orders(g, seed), fraction))
    return clone


def prune_to_mac_ratio(
    modules, target, n_feats, frames, seed=0, tol=0.01, steps=30
):
    """Random width pruning whose MACs are ``target`` x the original.

    One fraction ``f`` for all prunable groups, found by bisection; MACs
    are counted on a random input of ``frames`` frames.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        ``model`` and ``output`` of a recipe (left unchanged).
    target : float
        Wanted ratio of pruned to original MACs.
    n_feats : int
        Features per frame of the input.
    frames : int
        Frames of the input MACs are counted on.
    seed : int
        Seed of the random channel orders.
    tol : float
        Accepted relative error of the ratio (0.01: within 1 %).
    steps : int
        Most bisection steps.

    Returns
    -------
    pruned : torch.nn.ModuleDict
    fraction : float
    ratio : float
        Achieved MAC ratio on ``frames`` frames.

    Example
    -------
    >>> m, n = build_model("librispeech_enc", quick=True)
    >>> _, f, r = prune_to_mac_ratio(m, 0.5, n, frames=40)
    >>> abs(r / 0.5 - 1) <= 0.02
    True
    """
    x = torch.rand(1, frames, n_feats)

    def run(m):
        return forward(m, x)

    base = count_macs(modules, run=run)
    groups = discover_groups(modules, run)
    lo, hi = 0.0, 1.0
    best = (float("inf"), None, None, None)
    for _ in range(steps):
        f = (lo + hi) / 2
        pruned = prune_width(modules, groups, f, seed)
        ratio = count_macs(pruned, run=run) / base
        err = abs(ratio / target - 1)
        if err < best[0]:
            best = (err, pruned, f, ratio)
        if err <= tol / 4:
            break
        if ratio > target:
            lo = f
        else:
            hi = f
    err, pruned, f, ratio = best
    if err > tol:
        print(
            f"warning: MAC ratio {ratio:.4f} misses {target} by more than "
            f"{tol:.0%} (channel granularity)",
            file=sys.stderr,
        )
    return pruned, f, ratio


def prune_depth(modules, n_layers):
    """A copy of ``modules`` whose RNN keeps its first ``n_layers`` layers.

    Example
    -------
    >>> m, _ = build_model("librispeech_enc", quick=True)
    >>> prune_depth(m, 2)["model"].RNN.rnn.num_layers
    2
    """
    clone = copy.deepcopy(modules)
    layers = _rnn_layers(clone)
    for layer in range(layers - 1, n_layers - 1, -1):
        remove_rnn_layer(clone, RNN_NAME, layer)
    return clone


def _rnn_layers(modules):
    rnn = modules.get_submodule(RNN_NAME)
    inner = rnn.rnn
    if isinstance(inner, torch.nn.RNNBase):
        return inner.num_layers
    return len(inner)


def make_variants(modules, n_feats, count_frames, seed=0):
    """The unpruned model and its pruned variants, with their MAC ratios.

    Returns
    -------
    list of dict
        ``name``, ``modules``, ``fraction`` and ``mac_ratio_count`` (MAC
        ratio on ``count_frames`` frames; 1.0 for the original).
    """
    out = [
        dict(
            name="unpruned", modules=modules, fraction=0.0, mac_ratio_count=1.0
        )
    ]
    for target in MAC_TARGETS:
        t0 = time.perf_counter()
        pruned, f, ratio = prune_to_mac_ratio(
            modules, target, n_feats, count_frames, seed=seed
        )
        print(
            f"  width x{target:.2f}: f={f:.4f}, MAC ratio {ratio:.4f} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        out.append(
            dict(
                name=f"width x{target:.2f}",
                modules=pruned,
                fraction=f,
                mac_ratio_count=ratio,
            )
        )
    x = torch.rand(1, count_frames, n_feats)
    base = count_macs(modules, run=lambda m: forward(m, x))
    for depth in RNN_DEPTHS:
        pruned = prune_depth(modules, depth)
        ratio = count_macs(pruned, run=lambda m: forward(m, x)) / base
        out.append(
            dict(
                name=f"{depth} RNN layers",
                modules=pruned,
                fraction=float("nan"),
                mac_ratio_count=ratio,
            )
        )
    return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device, dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def time_components(modules, x, dtype, runs=3):
    """Median milliseconds spent in the CNN, the RNN and the rest.

    Timed with hooks that synchronise the device around ``model.CNN`` and
    ``model.RNN`` (a separate pass: the synchronisation costs a little).

    Example
    -------
    >>> m, n = build_model("timit_ctc", quick=True)
    >>> ms = time_components(m, torch.rand(1, 40, n), torch.float32, runs=1)
    >>> sorted(ms)
    ['cnn_ms', 'other_ms', 'rnn_ms']
    """
    device = x.device
    parts = {
        "cnn_ms": modules["model"].CNN,
        "rnn_ms": modules["model"].RNN,
    }
    spent = {k: [] for k in parts}
    total = []
    start = {}
    handles = []
    for key, module in parts.items():

        def pre(m, args, key=key):
            _sync(device)
            start[key] = time.perf_counter()

        def post(m, args, out, key=key):
            _sync(device)
            spent[key].append(time.perf_counter() - start[key])

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        with torch.no_grad(), _autocast(device, dtype):
            for _ in range(runs):
                _sync(device)
                t0 = time.perf_counter()
                forward(modules, x)
                _sync(device)
                total.append(time.perf_counter() - t0)
    finally:
        for h in handles:
            h.remove()
    out = {k: 1000 * statistics.median(v) for k, v in spent.items()}
    out["other_ms"] = 1000 * statistics.median(total) - sum(out.values())
    return out


def time_variants(variants, x, dtype, warmup, repeats, max_seconds):
    """Interleaved latency of every variant on the same input.

    Arguments
    ---------
    variants : list of dict
        Each with ``modules`` already on ``x.device``; the first is the
        reference for the ratios.
    x : torch.Tensor
        The input ``(batch, frames, features)``.
    dtype : torch.dtype
        ``torch.float32``, or another one for ``torch.autocast``.
    warmup : int
        Rounds run before timing.
    repeats : int
        Most timed rounds.
    max_seconds : float or None
        Fewer rounds (at least 3) when ``repeats`` would last longer.

    Returns
    -------
    list of list of float
        Seconds of each round, per variant.
    """
    device = x.device
    times = [[] for _ in variants]
    with torch.no_grad(), _autocast(device, dtype):
        round_s = 0.0
        for _ in range(warmup):
            t0 = time.perf_counter()
            for v in variants:
                forward(v["modules"], x)
            _sync(device)
            round_s = time.perf_counter() - t0
        rounds = repeats
        if max_seconds and round_s > 0:
            rounds = max(3, min(repeats, int(max_seconds / round_s)))
        for r in range(rounds):
            order = list(range(len(variants)))
            if r % 2:
                order.reverse()
            for i in order:
                _sync(device)
                t0 = time.perf_counter()
                forward(variants[i]["modules"], x)
                _sync(device)
                times[i].append(time.perf_counter() - t0)
    return times


def summarise(times):
    """Median latency, paired ratio to the first variant, spread.

    ``latency_ratio`` is the median over rounds of the ratio measured in
    the same round; ``ratio_of_mins`` (fastest run over fastest run) is
    the more robust one on a machine shared with other work, whose
    interference only ever adds time.

    Example
    -------
    >>> rows = summarise([[1.0, 1.2, 1.1], [0.5, 0.6, 0.5]])
    >>> [round(r["latency_ratio"], 3) for r in rows]
    [1.0, 0.5]
    """
    ref = times[0]
    out = []
    for t in times:
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
        out.append(
            dict(
                latency_ms=1000 * statistics.median(t),
                latency_ratio=statistics.median(a / b for a, b in zip(t, ref)),
                ratio_of_medians=statistics.median(t) / statistics.median(ref),
                ratio_of_mins=min(t) / min(ref),
                spread_pct=100 * (q[2] - q[0]) / statistics.median(t),
                runs=len(t),
            )
        )
    return out


# Errors after which the input is halved in time and tried again.
_TOO_BIG = {"OOM": "OOM", "32-bit": "tensor over 2^31 elements"}


def _is_oom(err):
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        "out of memory" in str(err).lower()
    )


def _error_kind(err):
    if _is_oom(err):
        return "OOM"
    if "32-bit index" in str(err):
        # e.g. a conv output of 512 x 1000 frames x 40 x 128 > 2^31 elements
        return "32-bit"
    return str(err).splitlines()[0][:80]


def _describe_rnn(modules):
    rnn = modules.get_submodule(RNN_NAME)
    inner = rnn.rnn if isinstance(rnn.rnn, torch.nn.RNNBase) else rnn
    bi = " bi" if getattr(inner, "bidirectional", False) else ""
    width = inner.hidden_size
    return f"{type(rnn).__name__} {_rnn_layers(modules)}x{width}{bi}"


def _flatten(modules):
    for m in modules.modules():
        if isinstance(m, torch.nn.RNNBase):
            m.flatten_parameters()


def _measure(variants, shape, device, dtype_name, args):
    """``(summaries, None)`` or ``(None, error)``.

    ``error`` is "OOM", "32-bit" (a tensor too large for 32-bit indexing)
    or the first line of the error message.

    The error is returned as text so that no traceback keeps the input or
    activations alive while the memory is released.
    """
    error = None
    try:
        x = torch.rand(*shape, device=device)
        times = time_variants(
            variants,
            x,
            DTYPES[dtype_name],
            args.warmup,
            args.repeats,
            args.max_seconds,
        )
        stats = summarise(times)
        if args.breakdown:
            for v, st in zip(variants, stats):
                st.update(
                    time_components(
                        v["modules"], x, DTYPES[dtype_name], args.breakdown
                    )
                )
        return stats, None
    except RuntimeError as err:
        error = _error_kind(err)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return None, error


def bench_model(name, args, device, save=None):
    """All rows of one model: every batch size and dtype on ``device``.

    ``save(new_rows)`` is called after each setting, so that a run cut
    short keeps what it measured.
    """
    modules, n_feats = build_model(name, quick=args.quick)
    label = f"{MODELS.get(name, (name, name))[1]} ({_describe_rnn(modules)})"
    print(f"== {label}", flush=True)
    variants = make_variants(modules, n_feats, args.count_frames, args.seed)
    base_params = count_params(modules)
    mac_cache = {}

    def macs_at(frames):
        if frames not in mac_cache:
            x = torch.rand(1, frames, n_feats, device=device)
            mac_cache[frames] = [
                count_macs(v["modules"], run=lambda m: forward(m, x))
                for v in variants
            ]
            ratios = [m / mac_cache[frames][0] for m in mac_cache[frames]]
            for v, r in zip(variants, ratios):
                # MACs are linear in time: the ratio cannot depend on it.
                if abs(r - v["mac_ratio_count"]) > 1e-3:
                    print(
                        f"warning: {v['name']}: MAC ratio {r:.4f} at "
                        f"{frames} frames, {v['mac_ratio_count']:.4f} at "
                        f"{args.count_frames}",
                        file=sys.stderr,
                    )
        return mac_cache[frames]

    for v in variants:
        v["modules"].to(device).eval()
        _flatten(v["modules"])
    rows = []
    for batch in args.batch_sizes:
        for dtype_name in args.dtypes:
            frames = args.frames
            note = ""
            while True:
                stats, error = _measure(
                    variants, (batch, frames, n_feats), device, dtype_name, args
                )
                if error in _TOO_BIG and frames // 2 >= args.min_frames:
                    note += f"{_TOO_BIG[error]} at {frames} frames; "
                    frames //= 2
                    continue
                note += _TOO_BIG.get(error, error) if error else ""
                break
            macs = macs_at(frames)
            for i, v in enumerate(variants):
                row = dict(
                    model=label,
                    device=device.type,
                    batch=batch,
                    dtype=dtype_name,
                    frames=frames,
                    variant=v["name"],
                    params=count_params(v["modules"]),
                    params_ratio=count_params(v["modules"]) / base_params,
                    gmacs_per_utt=macs[i] / 1e9,
                    mac_ratio=macs[i] / macs[0],
                    mac_ratio_count=v["mac_ratio_count"],
                    fraction=v["fraction"],
                    note=note.strip("; "),
                )
                if stats is None:
                    row.update(
                        latency_ms=float("nan"),
                        latency_ratio=float("nan"),
                        ratio_of_medians=float("nan"),
                        ratio_of_mins=float("nan"),
                        cnn_ms=float("nan"),
                        rnn_ms=float("nan"),
                        other_ms=float("nan"),
                        spread_pct=float("nan"),
                        runs=0,
                    )
                else:
                    row.update(cnn_ms=float("nan"), rnn_ms=float("nan"))
                    row.update(other_ms=float("nan"))
                    row.update(stats[i])
                rows.append(row)
            if save is not None:
                save(rows[-len(variants) :])
            line = ", ".join(
                f"{r['variant']} x{r['latency_ratio']:.2f}"
                for r in rows[-len(variants) :]
            )
            print(
                f"  B={batch} {dtype_name} {frames} fr: {line} {note}",
                flush=True,
            )
    variants.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def format_table(rows):
    """The rows as a Markdown table.

    Example
    -------
    >>> print(format_table([]).splitlines()[0])
    | model | device | B | dtype | frames | variant | params (M) | ...
    """
    head = (
        "| model | device | B | dtype | frames | variant | params (M) "
        "| params ratio | GMAC/utt | MAC ratio | latency (ms) "
        "| latency ratio | min ratio | IQR % | runs "
        "| CNN / RNN / other ms | note |"
    )
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['device']} | {r['batch']} | {r['dtype']} "
            f"| {r['frames']} | {r['variant']} | {r['params'] / 1e6:.2f} "
            f"| {r['params_ratio']:.2f} | {r['gmacs_per_utt']:.2f} "
            f"| {r['mac_ratio']:.3f} | {r['latency_ms']:.1f} "
            f"| {r['latency_ratio']:.2f} | {r['ratio_of_mins']:.2f} "
            f"| {r['spread_pct']:.0f} "
            f"| {r['runs']} | {_parts(r)} | {r['note']} |"
        )
    return "\n".join(lines)


def _parts(row):
    ms = [row.get(k, float("nan")) for k in ("cnn_ms", "rnn_ms", "other_ms")]
    if any(m != m for m in ms):  # NaN: not measured
        return ""
    return " / ".join(f"{m:.0f}" if m >= 10 else f"{m:.1f}" for m in ms)


def environment(device, load_start=None):
    """One line describing where the numbers were measured."""
    parts = [
        f"torch {torch.__version__}",
        f"Python {platform.python_version()}",
    ]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
        parts.append(
            f"cudnn {torch.backends.cudnn.version()}, TF32 conv "
            f"{torch.backends.cudnn.allow_tf32}, TF32 matmul "
            f"{torch.backends.cuda.matmul.allow_tf32}"
        )
    else:
        parts.append(f"{platform.processor() or platform.machine()}")
        parts.append(f"{os.cpu_count()} cores")
        parts.append(f"{torch.get_num_threads()} threads")
        if load_start is not None:
            parts.append(f"1-min load average {load_start:.1f} at the start")
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        parts.append(f"1/5/15-min load average {load} at the end")
    return ", ".join(parts)


def write_csv(rows, path):
    """Writes the rows with the columns ``FIELDS``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    k: (f"{v:.5g}" if isinstance(v, float) else v)
                    for k, v in r.items()
                }
            )


def plot(rows, path, title):
    """Latency ratio against MAC ratio: a panel per model, a line per
    setting (solid: width pruning, dashed: fewer RNN layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(
        1, len(models), figsize=(5 * len(models), 4.6), squeeze=False
    )
    for ax, model in zip(axes[0], models):
        settings = list(
            dict.fromkeys(
                (r["batch"], r["dtype"], r["frames"])
                for r in rows
                if r["model"] == model
            )
        )
        for key in settings:
            sel = [
                r
                for r in rows
                if r["model"] == model
                and (r["batch"], r["dtype"], r["frames"]) == key
                and r["runs"]
            ]
            if not sel:
                continue
            width = [r for r in sel if not r["variant"].endswith("layers")]
            depth = [sel[0]] + [
                r for r in sel if r["variant"].endswith("layers")
            ]
            (line,) = ax.plot(
                [r["mac_ratio"] for r in width],
                [r["latency_ratio"] for r in width],
                "o-",
                label=f"B={key[0]} {key[1]}, {key[2]} frames",
            )
            ax.plot(
                [r["mac_ratio"] for r in depth],
                [r["latency_ratio"] for r in depth],
                "^--",
                color=line.get_color(),
            )
        ax.plot([0, 1.05], [0, 1.05], color="grey", lw=0.8, ls=":")
        ax.set_xlim(0.4, 1.03)
        ax.set_ylim(0.0, 1.25)
        ax.set_xlabel("MAC ratio (pruned / unpruned)")
        ax.set_ylabel("latency ratio (pruned / unpruned)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{title}\no-: width pruning (MACs x0.70, x0.50); "
        "^--: 3 and 2 RNN layers",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_csv(path):
    """Rows written by :func:`write_csv`, numbers as numbers."""
    ints = {"batch", "frames", "params", "runs"}
    text = {"model", "device", "dtype", "variant", "note"}
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if k in text:
                    row[k] = v
                elif k in ints:
                    row[k] = int(v)
                else:
                    row[k] = float(v) if v else float("nan")
            for k in FIELDS:
                row.setdefault(k, float("nan"))
            rows.append(row)
    return rows


def replot(csv_path):
    """Redraws the PNG and the table of an earlier run from its CSV.

    The header of the ``.md`` beside the CSV (machine, command) is kept.
    """
    stem = csv_path[: -len(".csv")]
    rows = read_csv(csv_path)
    header = [f"# Pruned CRDNN latency ({rows[0]['device']})", "", ""]
    if os.path.isfile(stem + ".md"):
        with open(stem + ".md") as f:
            header = f.read().split("\n| model |")[0].rstrip("\n").split("\n")
    env = next((h for h in header[1:] if h.strip()), "").rstrip(".")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(header) + "\n\n" + format_table(rows) + "\n")
    plot(rows, stem + ".png", f"{rows[0]['device']}: {env}")
    print(format_table(rows))
    return rows


def build_parser():
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        help="keys of MODELS or preset names (default: all)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="default: 1 on cpu, 16 512 on cuda",
    )
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=list(DTYPES),
        default=None,
        help="default: fp32 on cpu, fp32 bf16 on cuda (bf16 by autocast)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="cap on timed seconds per setting (fewer rounds, at least 3)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="timed input length (default 1000 = 10 s of audio)",
    )
    p.add_argument(
        "--count-frames",
        type=int,
        default=None,
        help="input length MACs are counted on while bisecting (200)",
    )
    p.add_argument(
        "--min-frames",
        type=int,
        default=125,
        help="on OOM the frames are halved down to this",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 2 on cpu, torch's own on cuda)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("benchmarks", "results"))
    p.add_argument("--tag", default=None, help="file name suffix")
    p.add_argument(
        "--quick", action="store_true", help="tiny models: a smoke test"
    )
    p.add_argument(
        "--breakdown",
        type=int,
        default=0,
        metavar="RUNS",
        help="also time CNN / RNN / rest separately (median of RUNS runs)",
    )
    p.add_argument(
        "--replot",
        metavar="CSV",
        default=None,
        help="only redraw the table and plot of an earlier run's CSV",
    )
    return p


def _defaults(args):
    cuda = args.device == "cuda"
    if args.batch_sizes is None:
        args.batch_sizes = [16, 512] if cuda else [1]
    if args.dtypes is None:
        args.dtypes = ["fp32", "bf16"] if cuda else ["fp32"]
    if args.frames is None:
        args.frames = 100 if args.quick else 1000
    if args.count_frames is None:
        args.count_frames = 40 if args.quick else 200
    if args.repeats is None:
        args.repeats = 3 if args.quick else 15
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.tag is None:
        args.tag = args.device + ("_quick" if args.quick else "")
    return args


def main(argv=None):
    """Runs the benchmark; returns the rows and writes the files.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    list of dict
        One row per model, setting and variant (see ``FIELDS``).
    """
    args = _defaults(build_parser().parse_args(argv))
    if args.replot:
        return replot(args.replot)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.threads is None and args.device == "cpu":
        args.threads = 2
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    device = torch.device(args.device)
    t0 = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"prune_latency_{args.tag}")
    rows = []

    def save(new_rows):
        rows.extend(new_rows)
        env = environment(device, load_start)
        with open(stem + ".md", "w") as f:
            f.write(f"# Pruned CRDNN latency ({args.device})\n\n")
            f.write(f"{env}.\n\n")
            f.write(f"Command: `python {' '.join(_command(argv))}`\n\n")
            f.write(format_table(rows) + "\n")
        write_csv(rows, stem + ".csv")
        plot(rows, stem + ".png", f"{args.device}: {env}")
        return env

    for name in args.models:
        bench_model(name, args, device, save)
    print()
    print(environment(device, load_start))
    print(format_table(rows))
    print(f"\nwrote {stem}.md/.csv/.png in {time.perf_counter() - t0:.0f} s")
    return rows


def _command(argv):
    args = sys.argv[1:] if argv is None else list(argv)
    return ["benchmarks/prune_latency.py"] + args


if __name__ == "__main__":
    main()
