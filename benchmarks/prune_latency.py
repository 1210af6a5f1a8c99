"""CRDNNs pruned to a latency target: is the target met on the device?

For each model preset (``speechbrain_prune/hparams``) and each condition
(device, threads, batch size, dtype, input length), the script asks the
library for models that run at 70 % and 50 % of the unpruned latency and
times them side by side with the unpruned model:

1. groups from ``discover_groups``; seeded random channel scores
   (``RandomScorer``): latency depends on the shapes left, not on which
   channels were chosen;
2. a latency table of the unpruned model measured on the device under
   test (``build_latency_table``: each group alone narrowed, each RNN
   layer / DNN block alone removed);
3. per target, two selections, each checked end to end and corrected by
   the library's ``LatencyStage.choose`` (the logic of a latency-targeted
   training stage):

   - ``width``: channels only (``Selector(target_type="latency")``);
   - ``depth``: whole RNN layers and DNN blocks allowed
     (``selection.joint.choose_depth_and_width``: each prefix of the
     ranked layers completed by the channel selection; the mix that
     changes the output least on a fixed random input wins, a data-free
     stand-in for the training loss a recipe compares mixes by);
4. the chosen model timed again side by side with the unpruned one
   (``latency_ratio``, median of alternating rounds): the ``measured``
   column, free of the stop-when-good-enough bias of step 3's check.

Outputs (``--out``, ``prune_latency_<tag>``): ``.md`` (the table, also
printed), ``.csv``, and ``.png`` (measured against requested ratio, one
panel per model), rewritten after every row so an interrupted run keeps
what it measured; ``--replot CSV [CSV ...]`` merges and redraws.
BENCHMARKS.md at the repository root has the results and their reading.

Example
-------
``python benchmarks/prune_latency.py --quick`` (tiny models, seconds)
``python benchmarks/prune_latency.py --device cpu --threads 2``
``python benchmarks/prune_latency.py --device cuda --batch-sizes 16 1``

Authors
 * speechbrain-prune team 2026
"""

import argparse
import contextlib
import csv
import logging
import math
import os
import platform
import sys
import time

import torch

from speechbrain_prune.cli import load_module
from speechbrain_prune.costs import count_macs, count_params
from speechbrain_prune.costs.latency import (
    build_latency_table,
    latency_ratio,
)
from speechbrain_prune.costs.setup import LatencySetup
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.scorers import RandomScorer
from speechbrain_prune.selection import SelectionError, Selector
from speechbrain_prune.step import PruneStep
from speechbrain_prune.training.latency_stage import LatencyStage
from speechbrain_prune.utils import copy_module

MODELS = {
    "timit_ctc": ("timit_ctc_crdnn", "TIMIT CTC (LiGRU 4x512 bi)"),
    "librispeech_enc": (
        "librispeech_seq2seq_crdnn_encoder",
        "LibriSpeech enc (LSTM 4x1024 bi)",
    ),
}
# Tiny versions of the presets for a smoke test (--quick).
QUICK_OVERRIDES = {
    "n_mels": 20,
    "output_neurons": 10,
    "model": {"cnn_channels": (16, 32), "rnn_neurons": 64, "dnn_neurons": 64},
    "output": {"input_size": 64},
}
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
VARIANTS = ("width", "depth")
FIELDS = [
    "model",
    "condition",
    "device",
    "batch",
    "dtype",
    "frames",
    "target",
    "variant",
    "removed",
    "params",
    "params_ratio",
    "gmacs",
    "mac_ratio",
    "asked",
    "check_ratio",
    "measured_ratio",
    "latency_ms",
    "error",
    "seconds",
    "note",
]
TEXT = {"model", "condition", "device", "dtype", "variant", "removed", "note"}


def forward(modules, x):
    """One forward pass of a preset's ``model`` and ``output`` modules.

    Example
    -------
    >>> m = torch.nn.ModuleDict({"model": torch.nn.Identity(),
    ...                          "output": torch.nn.Linear(3, 2)})
    >>> forward(m, torch.rand(1, 4, 3)).shape
    torch.Size([1, 4, 2])
    """
    return modules["output"](modules["model"](x))


def build_model(name, quick=False):
    """A preset's ``modules`` (eval mode, CPU) and its feature count.

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


def runner(x, dtype):
    """``run(root)``: the timed forward on ``x``, autocast for bf16."""
    device_type = x.device.type

    def run(root):
        autocast = (
            torch.autocast(device_type, dtype=torch.bfloat16)
            if dtype == "bf16"
            else contextlib.nullcontext()
        )
        with torch.no_grad(), autocast:
            return forward(root, x)

    return run


def output_change(dense, x):
    """``loss_of(model)``: mean squared change of the output on ``x``
    relative to the unpruned model's output variance (data-free)."""
    with torch.no_grad():
        ref = forward(dense.eval(), x).float()
    scale = float(ref.var()) or 1.0

    def loss_of(model):
        with torch.no_grad():
            out = forward(model.eval(), x).float()
        return float((out - ref).pow(2).mean()) / scale

    return loss_of


class Selections:
    """The two selections of a condition, each a library
    :class:`~speechbrain_prune.step.PruneStep` (``step(fraction, table)``
    returning a :class:`PruningChoice`, as ``LatencyStage.choose`` wants):
    ``width`` (channels only) and ``depth`` (layers and blocks ranked with
    the channels). Scores are seeded random; the loss that mixes are
    compared by is the data-free :func:`output_change`.

    Arguments
    ---------
    root : torch.nn.Module
        The unpruned model (CPU).
    groups : GroupSet
        Its groups.
    probe : torch.Tensor
        A short CPU input, for tracing pruned copies and the loss stand-in.
    args : argparse.Namespace
        ``round_to``, ``min_keep_fraction`` and ``seed``.
    """

    def __init__(self, root, groups, probe, args):
        self.root = root
        self.groups = groups
        change = output_change(root, probe)
        options = {
            "round_to": args.round_to,
            "min_keep_fraction": args.min_keep_fraction,
            "seed": args.seed,
        }

        def run(model):
            return forward(model, probe)

        def step(depth):
            return PruneStep(
                root,
                run,
                lambda model, batch: change(model),
                [probe],
                RandomScorer(seed=args.seed),
                measure="latency",
                selection=options,
                depth=depth,
                groups=groups,
            )

        self.width = step(False)
        self.depth = step(True)
        self.options = options

    @property
    def report(self):
        """The mixes the last depth-allowed selection compared."""
        return self.depth.report

    def width_limit(self, table):
        """The largest latency fraction channels alone may remove (the
        table's estimate)."""
        try:
            selector = Selector(
                target=1e-6,
                target_type="latency",
                latency_table=table,
                **self.options,
            )
            return selector.check(self.root, self.groups)
        except SelectionError:
            return 0.0


def describe_choice(choice):
    """Removed layers and kept widths of the groups that lost channels.

    Example
    -------
    >>> from speechbrain_prune.selection.joint import PruningChoice
    >>> describe_choice(PruningChoice())
    'nothing'
    """
    parts = [c.name.replace("model.", "") for c in choice.depth]
    for gid, removed in sorted(choice.removals.items()):
        size = choice.groups[gid].size
        name = gid.replace("model.", "").replace("block_", "b")
        parts.append(f"{name} {size - len(removed)}/{size}")
    return ", ".join(parts) or "nothing"


def mix_summary(report):
    """The joint selection's mixes, the chosen one starred.

    Example
    -------
    >>> mix_summary([{"depth": [], "loss": 0.5, "chosen": False},
    ...              {"depth": ["RNN:3"], "loss": 0.2, "chosen": True}])
    '[-] loss 0.5; *[RNN:3] loss 0.2'
    """
    parts = []
    for r in report:
        loss = "infeasible" if r["loss"] is None else f"loss {r['loss']:.3g}"
        star = "*" if r.get("chosen") else ""
        parts.append(f"{star}[{', '.join(r['depth']) or '-'}] {loss}")
    return "; ".join(parts).replace("model.", "")


def counts(model, x_count, scale):
    """Parameters and GMACs per utterance (counted on ``x_count``)."""
    macs = count_macs(model, run=lambda m: forward(m, x_count))
    return count_params(model), macs * scale / 1e9


def condition_name(device, threads, batch, dtype):
    if device.type == "cpu":
        return f"cpu {threads} thr, B={batch}, {dtype}"
    return f"cuda, B={batch}, {dtype}"


def bench_condition(name, device, batch, dtype, args, emit, deadline):
    """All rows of one model under one condition (``emit`` each row)."""
    root, n_mels = build_model(name, args.quick)
    label = MODELS.get(name, (name, name))[1]
    probe = torch.rand(1, args.probe_frames, n_mels)
    groups = discover_groups(root, lambda m: forward(m, probe))
    count_frames = min(args.count_frames, args.frames)
    x_count = torch.rand(1, count_frames, n_mels)
    scale = args.frames / count_frames
    setup = LatencySetup(
        device=str(device),
        threads=args.threads if device.type == "cpu" else None,
        batch_size=batch,
        seconds=args.frames / 100,
        dtype=DTYPES[dtype],
        repeats=args.repeats,
        warmup=args.warmup,
        rounds=args.rounds,
        fractions=args.fractions,
    )
    run = runner(torch.rand(batch, args.frames, n_mels, device=device), dtype)
    base = {
        "model": label,
        "condition": condition_name(device, args.threads, batch, dtype),
        "device": setup.describe()
        if device.type == "cpu"
        else torch.cuda.get_device_name(device),
        "batch": batch,
        "dtype": dtype,
        "frames": args.frames,
    }
    params0, gmacs0 = counts(root, x_count, scale)
    dense = copy_module(root).to(device)
    start = time.perf_counter()
    with setup.timing():
        table = build_latency_table(
            dense,
            groups,
            run,
            fractions=setup.fractions,
            repeats=setup.repeats,
            warmup=setup.warmup,
            depth=True,
            rounds=setup.rounds,
            progress=args.progress,
        )
    base_ms = 1000 * table["base_seconds"]
    emit(
        dict(
            base,
            target=1.0,
            variant="unpruned",
            removed="nothing",
            params=params0,
            params_ratio=1.0,
            gmacs=gmacs0,
            mac_ratio=1.0,
            measured_ratio=1.0,
            latency_ms=base_ms,
            seconds=time.perf_counter() - start,
            note=f"latency table: {len(table['groups'])} groups, "
            f"{len(table['depth'])} depth entries",
        )
    )
    selections = Selections(root, groups, probe, args)
    stage = LatencyStage(setup, root, tolerance=args.tolerance, tries=3)
    index = 0
    for target in args.targets:
        for variant in VARIANTS:
            row = dict(base, target=target, variant=variant)
            if time.monotonic() > deadline:
                emit(dict(row, note="skipped: --deadline-s reached"))
                continue
            start = time.perf_counter()
            # The unpruned model is the current one: its ratio is 1.
            stage.memory[index] = {"current_ratio": 1.0, "table": table}
            select = getattr(selections, variant)
            try:
                choice, cache = stage.choose(
                    index, root, groups, run, select, 1.0 - target
                )
            except Exception as err:  # noqa: BLE001 (the row says why)
                if not isinstance(err, SelectionError):
                    logging.exception("selection failed")
                    emit(dict(row, note=f"error: {err!r}"[:300]))
                    index += 1
                    continue
                note = f"unreachable: {err}"
                if variant == "width":
                    limit = selections.width_limit(table)
                    note = (
                        f"unreachable: channels alone remove at most "
                        f"{limit:.0%} of the latency (table estimate)"
                    )
                emit(dict(row, note=note[:300]))
                index += 1
                continue
            index += 1
            model = copy_module(root)
            choice.apply(model)
            params, gmacs = counts(model, x_count, scale)
            with setup.timing():
                measured = latency_ratio(
                    dense,
                    model.to(device),
                    run,
                    setup.repeats,
                    setup.warmup,
                    args.final_rounds,
                )
            mixes = ""
            if variant == "depth":
                mixes = mix_summary(selections.report)
            emit(
                dict(
                    row,
                    removed=describe_choice(choice),
                    params=params,
                    params_ratio=params / params0,
                    gmacs=gmacs,
                    mac_ratio=gmacs / gmacs0,
                    asked=1.0 - min(cache["fraction"], 0.999),
                    check_ratio=cache["measured_ratio"],
                    measured_ratio=measured,
                    latency_ms=measured * base_ms,
                    error=measured - target,
                    seconds=time.perf_counter() - start,
                    note=mixes,
                )
            )
            del model
    del dense
    if device.type == "cuda":
        torch.cuda.empty_cache()


# Output ---------------------------------------------------------------------
def _fmt(value, spec):
    if (
        value is None
        or value == ""
        or (isinstance(value, float) and math.isnan(value))
    ):
        return "-"
    return format(value, spec)


def format_table(rows):
    """The Markdown table of the rows."""
    head = (
        "| model | condition | target | variant | params | GMACs | MACs | "
        "asked | check | **measured** | ms | removed / kept |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        measured = _fmt(r.get("measured_ratio"), ".3f")
        if r["variant"] != "unpruned" and measured != "-":
            measured = f"**x{measured}**"
        removed = r.get("removed") or ""
        note = r.get("note") or ""
        if note and (r["variant"] != "depth" or measured == "-"):
            removed = f"{removed} ({note})" if removed else note
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["condition"],
                    _fmt(r.get("target"), ".2f"),
                    r["variant"],
                    _fmt(r.get("params"), ",.0f"),
                    _fmt(r.get("gmacs"), ".2f"),
                    _fmt(r.get("mac_ratio"), ".3f"),
                    _fmt(r.get("asked"), ".3f"),
                    _fmt(r.get("check_ratio"), ".3f"),
                    measured,
                    _fmt(r.get("latency_ms"), ".1f"),
                    removed.replace("|", "/"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_csv(rows, path):
    """Writes the rows with the columns ``FIELDS``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    k: (f"{v:.5g}" if isinstance(v, float) else v)
                    for k, v in r.items()
                }
            )


def read_csv(path):
    """Rows written by :func:`write_csv`, numbers as numbers."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if k in TEXT:
                    row[k] = v
                else:
                    row[k] = float(v) if v else float("nan")
            rows.append(row)
    return rows


def plot(rows, path, title):
    """Measured latency ratio per condition, one panel per model: o width
    only, ^ depth allowed, x on the top edge: unreachable (refused by the
    selection); dashed lines at the targets, bands of +-0.05."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(
        1, len(models), figsize=(5.5 * len(models), 4.4), squeeze=False
    )
    colors = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        conds = list(dict.fromkeys(r["condition"] for r in mine))
        targets = sorted(
            {r["target"] for r in mine if r["variant"] != "unpruned"},
            reverse=True,
        )
        for t, color in zip(targets, colors):
            ax.axhspan(t - 0.05, t + 0.05, color=color, alpha=0.08)
            ax.axhline(t, color=color, ls="--", lw=0.8)
            for variant, marker, shift in (
                ("width", "o", -0.1),
                ("depth", "^", 0.1),
            ):
                pts = [
                    (conds.index(r["condition"]) + shift, r["measured_ratio"])
                    for r in mine
                    if r["target"] == t
                    and r["variant"] == variant
                    and not math.isnan(float(r.get("measured_ratio") or "nan"))
                ]
                if pts:
                    ax.plot(
                        *zip(*pts),
                        marker,
                        color=color,
                        ls="none",
                        label=f"x{t:.2f} {variant}",
                    )
                refused = [
                    conds.index(r["condition"]) + shift
                    for r in mine
                    if r["target"] == t
                    and r["variant"] == variant
                    and str(r.get("note", "")).startswith("unreachable")
                ]
                if refused:  # the selection refused: drawn on the top edge
                    ax.plot(refused, [1.07] * len(refused), "x", color=color)
        ax.set_xticks(range(len(conds)))
        ax.set_xlim(-0.5, len(conds) - 0.5)
        ax.set_xticklabels(conds, rotation=20, ha="right", fontsize=7)
        ax.set_ylim(0.0, 1.1)
        ax.set_ylabel("measured latency ratio (pruned / unpruned)")
        ax.set_title(model, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{title}\no width only, ^ depth allowed, x (top) unreachable; "
        "bands: target +-0.05",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(rows, stem, header, formats=("md", "csv", "png")):
    """``stem.md``, ``stem.csv`` and ``stem.png`` of the rows."""
    if "md" in formats:
        with open(stem + ".md", "w") as f:
            f.write(header + "\n\n" + format_table(rows) + "\n")
    if "csv" in formats:
        write_csv(rows, stem + ".csv")
    if rows and "png" in formats:
        plot(rows, stem + ".png", header.splitlines()[-1][:160])


def environment(device, threads):
    """One line describing where the numbers were measured."""
    parts = [
        f"torch {torch.__version__}",
        f"Python {platform.python_version()}",
    ]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
        parts.append(f"cuDNN {torch.backends.cudnn.version()}")
    parts.append(platform.processor() or platform.machine())
    affinity = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None
    )
    parts.append(f"{os.cpu_count()} cores ({affinity} usable)")
    if device.type == "cpu":
        parts.append(f"{threads} threads")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    parts.append(f"load average {load} at the start")
    return ", ".join(parts)


def replot(paths, out, tag):
    """Merges CSVs of earlier runs into one table and plot."""
    rows = [r for p in paths for r in read_csv(p)]
    stem = os.path.join(out, f"prune_latency_{tag}")
    header = [f"# Pruned CRDNN latency ({tag})", ""]
    for path in paths:  # each run's command and machine, when kept
        md = path[: -len(".csv")] + ".md"
        if os.path.isfile(md):
            with open(md) as f:
                kept = f.read().split("\n| model |")[0].splitlines()[1:]
            header += [line for line in kept if line.strip()]
    header = (
        "\n\n".join(header[:1] + header[2:])
        if len(header) > 2
        else (
            f"# Pruned CRDNN latency ({tag})\n\nMerged from {', '.join(paths)}"
        )
    )
    write_outputs(rows, stem, header)
    print(format_table(rows))
    return rows


# Command line ---------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--targets", nargs="+", type=float, default=[0.7, 0.5])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=None, help="100 per s")
    p.add_argument("--fractions", nargs="+", type=float, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--final-rounds", type=int, default=None)
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--min-keep-fraction", type=float, default=0.1)
    p.add_argument("--count-frames", type=int, default=200)
    p.add_argument("--probe-frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deadline-s", type=float, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"))
    p.add_argument("--tag", default=None)
    p.add_argument("--formats", nargs="+", default=["md", "csv", "png"])
    p.add_argument("--replot", nargs="+", default=None, metavar="CSV")
    return p


def _defaults(args):
    cuda = args.device == "cuda"
    quick = args.quick
    fill = {
        "batch_sizes": [16, 1] if cuda else [1],
        "dtypes": ["fp32", "bf16"] if cuda else ["fp32"],
        "frames": 100 if quick else 1000,
        "fractions": [0.5],
        "repeats": 1,
        "warmup": 1 if cuda else 0,
        "rounds": 1 if quick else 2,
        "final_rounds": 1 if quick else 3,
    }
    for key, value in fill.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tag is None:
        args.tag = args.device + ("_quick" if quick else "")
    return args


def main(argv=None):
    """Runs the benchmark; returns the rows."""
    args = build_parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        return replot(args.replot, args.out, args.tag or "merged")
    args = _defaults(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    deadline = time.monotonic() + (args.deadline_s or math.inf)
    stem = os.path.join(args.out, f"prune_latency_{args.tag}")
    header = (
        f"# Pruned CRDNN latency ({args.tag})\n\n"
        f"`python benchmarks/prune_latency.py {' '.join(argv or sys.argv[1:])}`"
        f"\n\n{environment(device, args.threads)}"
    )
    rows = []

    def emit(row):
        rows.append(row)
        write_outputs(rows, stem, header, args.formats)
        print(format_table([row]).splitlines()[-1], flush=True)

    for batch in args.batch_sizes:
        for dtype in args.dtypes:
            for name in args.models:
                if time.monotonic() > deadline:
                    print(f"skipped {name} B={batch} {dtype}: deadline")
                    continue
                try:
                    bench_condition(
                        name, device, batch, dtype, args, emit, deadline
                    )
                except Exception as err:  # noqa: BLE001 (go on, say why)
                    logging.exception(f"{name} B={batch} {dtype} failed")
                    emit(
                        {
                            "model": name,
                            "condition": f"{device} B={batch} {dtype}",
                            "variant": "unpruned",
                            "note": f"error: {err!r}"[:300],
                        }
                    )
    print(header + "\n\n" + format_table(rows))
    return rows


if __name__ == "__main__":
    main()
