"""Latency of a dense and pruned CRDNN in PyTorch, ONNX Runtime and int8.

One process, CPU, ``--threads`` threads (PyTorch intra-op and ONNX Runtime
intra-op alike), batch 1, ``--seconds`` of audio (100 frames a second,
40 filterbank features). Models: a TIMIT-CTC-sized CRDNN (2 CNN blocks
128/256, time pooling, 4 x 512 bidirectional RNN, 2 x 512 DNN, 40
outputs; ``--rnn`` picks LSTM, GRU or LiGRU) with random weights and its
randomly width-pruned copies whose parameter counts are ``--targets`` x
the dense one (one seeded random fraction of every prunable group, found
by bisection), and, with ``--latency-targets``, copies pruned the same
way whose PyTorch eager latency is that ratio of the dense one (the
fraction found by bisection on the latency ratio measured side by side:
:func:`prune_to_latency`). Latency does not depend on the weights'
values, only on the shapes that remain.

Each model runs in: PyTorch eager fp32, PyTorch int8
(``torch.ao.quantization.quantize_dynamic`` of Linear/LSTM/GRU), ONNX
Runtime fp32 and ONNX Runtime int8 (dynamic quantization of MatMul/LSTM;
``+conv``: convolutions too); ONNX Runtime's idle threads sleep instead of
spinning, so that they take no CPU from the cell timed next. Timing: one
pass for the errors (which also warms every cell up), ``--warmup`` more
rounds, then rounds in which
every (model, runtime) runs once, the order reversed every other round;
"x dense" is the median over rounds of dense PyTorch eager / this cell in
the same round (a speed-up), "best x" the ratio of the fastest runs (more
robust on a shared machine). Errors: largest absolute difference of the
log-probabilities to the same model in PyTorch fp32, and the share of
frames whose best label agrees (random weights: not a word error rate).

Outputs (``--out``, stem ``deploy_latency_<rnn>``): ``.md`` (printed
too), ``.csv`` and ``.png``.

Example
-------
``python benchmarks/deploy_latency.py --rnn lstm --repeats 10``
``python benchmarks/deploy_latency.py --targets --latency-targets 0.7 0.5``
``python benchmarks/deploy_latency.py --quick`` (tiny models, seconds)

Authors
 * speechbrain-prune team 2026
"""

import argparse
import copy
import csv
import os
import statistics
import sys
import tempfile
import textwrap
import time

import torch

from speechbrain_prune.costs import count_params
from speechbrain_prune.costs.latency import latency_ratio
from speechbrain_prune.deploy import CTCRecognizer, GlobalNorm
from speechbrain_prune.deploy.onnx_export import (
    INPUT,
    export_onnx,
    onnx_session,
)
from speechbrain_prune.deploy.quantize import (
    file_size,
    quantize_onnx,
    quantize_torch,
    torch_size,
)
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.surgery import apply_removals

HERE = os.path.dirname(os.path.abspath(__file__))
N_MELS, N_OUT = 40, 40
FIELDS = [
    "model",
    "params",
    "params_ratio",
    "runtime",
    "latency_ms",
    "x_dense",
    "best_x_dense",
    "size_bytes",
    "max_abs_err",
    "argmax_agree",
    "selection_latency_ratio",
]


def prune_width(modules, groups, fraction, seed=0):
    """A copy of ``modules`` with a seeded random ``fraction`` of every
    prunable group removed (each keeps at least its ``min_size``)."""
    gen = torch.Generator().manual_seed(seed)
    removals = {}
    for group in groups.prunable():
        order = torch.randperm(group.size, generator=gen)
        n = min(group.size - group.min_size, int(round(fraction * group.size)))
        removals[group.id] = order[:n].sort()[0]
    clone = copy.deepcopy(modules)
    apply_removals(clone, copy.deepcopy(groups), removals)
    return clone


def build_dense(rnn, quick=False, seed=0):
    """The dense recogniser: TIMIT CTC CRDNN sizes (``quick``: tiny).

    Example
    -------
    >>> rec = build_dense("gru", quick=True)
    >>> rec(torch.rand(1, 20, N_MELS)).shape
    torch.Size([1, 10, 40])
    """
    from speechbrain.lobes.models.CRDNN import CRDNN
    from speechbrain.nnet import RNN
    from speechbrain.nnet.linear import Linear

    torch.manual_seed(seed)
    cls = {"lstm": RNN.LSTM, "gru": RNN.GRU, "ligru": RNN.LiGRU}[rnn]
    cnn, width, dnn = ((8, 16), 32, 32) if quick else ((128, 256), 512, 512)
    model = CRDNN(
        input_size=N_MELS,
        activation=torch.nn.LeakyReLU,
        cnn_blocks=2,
        cnn_channels=cnn,
        cnn_kernelsize=(3, 3),
        time_pooling=True,
        rnn_class=cls,
        rnn_layers=2 if quick else 4,
        rnn_neurons=width,
        rnn_bidirectional=True,
        dnn_blocks=2,
        dnn_neurons=dnn,
    )
    norm = GlobalNorm(torch.randn(N_MELS), torch.rand(N_MELS) + 0.5)
    output = Linear(N_OUT, input_size=dnn)
    return CTCRecognizer(model, output, norm).eval()


def prune_to_params(rec, target, seed=0, steps=20):
    """A copy of ``rec`` whose parameters are ``target`` x its own.

    Returns ``(pruned, fraction removed of every group, params ratio)``.
    """
    modules = torch.nn.ModuleDict({"model": rec.model, "output": rec.output})
    x = torch.rand(1, 40, N_MELS)
    groups = discover_groups(modules, lambda m: m["output"](m["model"](x)))
    base = count_params(modules)
    lo, hi, best = 0.0, 1.0, None
    for _ in range(steps):
        f = (lo + hi) / 2
        pruned = prune_width(modules, groups, f, seed)
        ratio = count_params(pruned) / base
        if best is None or abs(ratio - target) < abs(best[2] - target):
            best = (pruned, f, ratio)
        if abs(ratio / target - 1) < 0.005:
            break
        lo, hi = (f, hi) if ratio > target else (lo, f)
    pruned, f, ratio = best
    return _recognizer(rec, pruned), f, ratio


def _recognizer(rec, pruned):
    """A recogniser of ``pruned`` modules with ``rec``'s normalisation."""
    norm = copy.deepcopy(rec.normalize)
    return CTCRecognizer(pruned["model"], pruned["output"], norm).eval()


def prune_to_latency(rec, target, x, seed=0, steps=6, tol=0.03, rounds=3):
    """A copy of ``rec`` whose PyTorch eager latency on ``x`` is ``target``
    x its own, measured (current thread count).

    The same seeded random width pruning as :func:`prune_to_params`, with
    the fraction found by bisection on the latency ratio measured side by
    side (:func:`~speechbrain_prune.costs.latency.latency_ratio`:
    ``rounds`` alternating pairs of one timed pass each, median), until it
    is within ``tol`` of ``target``. On a loaded machine one measurement
    can be far off, so the bisection may settle on a fraction whose true
    ratio misses the target: the benchmark's table re-measures every
    model. Returns ``(pruned, fraction removed of every group, measured
    latency ratio)``.

    Example
    -------
    >>> rec = build_dense("lstm", quick=True)
    >>> x = torch.rand(1, 50, N_MELS)
    >>> small, f, ratio = prune_to_latency(rec, 0.6, x, steps=2, rounds=1)
    >>> count_params(small) < count_params(rec), 0 < f < 1
    (True, True)
    """
    modules = torch.nn.ModuleDict({"model": rec.model, "output": rec.output})
    probe = torch.rand(1, 40, N_MELS)
    groups = discover_groups(modules, lambda m: m["output"](m["model"](probe)))
    lo, hi, best = 0.0, 1.0, None
    for _ in range(steps):
        f = (lo + hi) / 2
        cand = _recognizer(rec, prune_width(modules, groups, f, seed))
        ratio = latency_ratio(rec, cand, x, 1, warmup=1, rounds=rounds)
        log(f"latency x{target}: fraction {f:.3f} -> x{ratio:.3f}")
        if best is None or abs(ratio - target) < abs(best[2] - target):
            best = (cand, f, ratio)
        if abs(ratio - target) < tol:
            break
        lo, hi = (f, hi) if ratio > target else (lo, f)
    return best


def runtimes(rec, folder, name, threads, conv_int8=True):
    """``{runtime: (run(x) -> log-probs numpy, bytes)}`` of one model."""
    fp32 = export_onnx(rec, os.path.join(folder, f"{name}.onnx"), N_MELS)
    int8 = quantize_onnx(fp32, os.path.join(folder, f"{name}.int8.onnx"))
    q = quantize_torch(rec)

    def torch_run(m):
        def run(x):
            with torch.no_grad():
                return m(x).numpy()

        return run

    def ort_run(path):
        sess = onnx_session(path, threads, spinning=False)
        return lambda x: sess.run(None, {INPUT: x.numpy()})[0]

    out = {
        "PyTorch fp32": (torch_run(rec), torch_size(rec)),
        "PyTorch int8": (torch_run(q), torch_size(q)),
        "ORT fp32": (ort_run(fp32), file_size(fp32)),
        "ORT int8": (ort_run(int8), file_size(int8)),
    }
    if conv_int8:
        path = os.path.join(folder, f"{name}.int8conv.onnx")
        quantize_onnx(fp32, path, op_types=("MatMul", "LSTM", "Conv"))
        out["ORT int8 +conv"] = (ort_run(path), file_size(path))
    return out


def time_cells(cells, x, warmup, repeats, max_seconds):
    """Seconds per round of every cell (interleaved, order alternating)."""
    for _ in range(warmup):
        for c in cells:
            c["run"](x)
    times = [[] for _ in cells]
    start = time.perf_counter()
    for r in range(repeats):
        order = list(range(len(cells)))
        if r % 2:
            order.reverse()
        for i in order:
            t0 = time.perf_counter()
            cells[i]["run"](x)
            times[i].append(time.perf_counter() - t0)
        log(f"round {r + 1}: " + " ".join(f"{t[-1]:.2f}" for t in times))
        if r >= 2 and time.perf_counter() - start > max_seconds:
            break
    return times


def log(msg, start=[]):
    """Progress on stderr, with the seconds since the first message."""
    start = start or start.append(time.time()) or start
    print(
        f"[{time.time() - start[0]:6.0f} s] {msg}", file=sys.stderr, flush=True
    )


def measure(args):
    """Builds, exports, times; returns the table's rows."""
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    dense = build_dense(args.rnn, args.quick)
    models = [("dense", dense, 1.0, "")]
    for t in args.targets:
        pruned, f, ratio = prune_to_params(dense, t)
        log(f"pruned x{t}: fraction {f:.3f}, params x{ratio:.3f}")
        models.append((f"pruned x{t:.2f} params", pruned, ratio, ""))
    frames = int(args.seconds * 100)
    x = torch.randn(
        1, frames, N_MELS, generator=torch.Generator().manual_seed(1)
    )
    for t in args.latency_targets:
        pruned, f, lat = prune_to_latency(dense, t, x)
        ratio = count_params(pruned) / count_params(dense)
        log(f"pruned latency x{t}: fraction {f:.3f}, latency x{lat:.3f}")
        name = f"pruned x{t:.2f} latency"
        models.append((name, pruned, ratio, round(lat, 3)))
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, rec, ratio, lat) in enumerate(models):
            log(f"exporting and quantizing {name}")
            for rt, (run, size) in runtimes(
                rec, tmp, f"m{i}", args.threads, not args.no_conv_int8
            ).items():
                cells.append(
                    dict(
                        model=name,
                        rec=rec,
                        ratio=ratio,
                        lat=lat,
                        runtime=rt,
                        run=run,
                        size=size,
                    )
                )
        log("errors")
        ref = {}
        for c in cells:  # errors, vs the same model in PyTorch fp32
            out = torch.from_numpy(c["run"](x))
            ref.setdefault(c["model"], out)
            r = ref[c["model"]]
            c["err"] = (out - r).abs().max().item()
            c["agree"] = (out.argmax(-1) == r.argmax(-1)).float().mean().item()
        log("timing")
        times = time_cells(
            cells, x, args.warmup, args.repeats, args.max_seconds
        )
    base = times[0]
    rows = []
    for c, t in zip(cells, times):
        rows.append(
            {
                "model": c["model"],
                "params": count_params(c["rec"]),
                "params_ratio": round(c["ratio"], 3),
                "runtime": c["runtime"],
                "latency_ms": round(1000 * statistics.median(t), 1),
                "x_dense": round(
                    statistics.median(b / v for b, v in zip(base, t)), 2
                ),
                "best_x_dense": round(min(base) / min(t), 2),
                "size_bytes": c["size"],
                "max_abs_err": float(f"{c['err']:.2e}"),
                "argmax_agree": round(c["agree"], 4),
                "selection_latency_ratio": c["lat"],
                "rounds": len(t),
            }
        )
    return rows


def format_table(rows, title):
    """Markdown table of the rows."""
    head = [
        "model",
        "params",
        "runtime",
        "latency ms",
        "x dense PyTorch",
        "best x",
        "size MB",
        "max abs err",
        "argmax agree",
    ]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for r in rows:
        vals = [
            r["model"],
            r["params"],
            r["runtime"],
            r["latency_ms"],
            r["x_dense"],
            r["best_x_dense"],
            f"{r['size_bytes'] / 1e6:.2f}",
            r["max_abs_err"],
            f"{100 * r['argmax_agree']:.1f} %",
        ]
        lines.append("| " + " | ".join(str(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path, title):
    """Speed-up over dense PyTorch, grouped by model, one bar a runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    rts = list(dict.fromkeys(r["runtime"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / len(rts)
    for j, rt in enumerate(rts):
        vals = [
            next(
                (
                    float(r["x_dense"])
                    for r in rows
                    if r["model"] == m and r["runtime"] == rt
                ),
                0,
            )
            for m in models
        ]
        ax.bar([i + j * w for i in range(len(models))], vals, w, label=rt)
    ax.axhline(3.0, color="k", ls="--", lw=0.8, label="goal x3")
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(models))], models)
    ax.set_ylabel("speed-up over dense PyTorch fp32")
    ax.set_title(textwrap.fill(title, 100), fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    """Runs the benchmark; writes ``.md``, ``.csv``, ``.png``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rnn", choices=["lstm", "gru", "ligru"], default="lstm")
    p.add_argument("--targets", type=float, nargs="*", default=[0.7, 0.5])
    p.add_argument(
        "--latency-targets",
        type=float,
        nargs="*",
        default=[],
        help="PyTorch eager latency ratios to prune to (measured)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--no-conv-int8", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny models")
    p.add_argument("--tag", default="", help="added to the files' stem")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    t0 = time.time()
    rows = measure(args)
    import platform

    import onnxruntime

    env = (
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{args.threads} threads, batch 1, {args.seconds:g} s of audio; "
        f"1-min load average {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end; {time.time() - t0:.0f} s"
    )
    stem = f"deploy_latency_{args.rnn}" + ("_quick" if args.quick else "")
    stem += f"_{args.tag}" if args.tag else ""
    os.makedirs(args.out, exist_ok=True)
    title = f"CRDNN ({args.rnn.upper()}), CPU: {env}"
    text = format_table(rows, title)
    print(text)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, stem + ".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS + ["rounds"])
        w.writeheader()
        w.writerows(rows)
    plot(rows, os.path.join(args.out, stem + ".png"), title)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
