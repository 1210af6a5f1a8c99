"""The main job: train a CRDNN recogniser, prune it, show error vs latency.

``speechbrain-prune demo`` runs the CTC recipe shipped with the package
(``speechbrain_prune/recipes/CTC``, the same files as the source tree's
``recipes/LibriSpeech/ASR/CTC``: train.py + ``hparams/train_pruned.yaml``,
pruning switched on from the YAML file) on speech it makes itself with
eSpeak NG, so nothing is downloaded:

1. train the dense CRDNN for ``--epochs`` epochs (its checkpoint is shared);
   the demo's CRDNN (:data:`MODEL`) has a small CNN and a wide GRU, so that
   most of its parameters and most of its CPU time are in the RNN;
2. for each criterion and each target (by default 30 % and 50 % fewer
   parameters: ``prune_measure`` of the recipe; a MAC cut barely moves the
   latency of a CRDNN, a parameter cut reaches its RNN), resume the dense
   run, prune at the next epoch and fine-tune ``--finetune`` epochs;
   ``dense_ft``, the dense model trained as many epochs, is the fair
   reference; these runs go ``--jobs`` at a time (one thread each on 2
   cores: faster than one run on 2 threads for a model this small);
3. export every model to a folder that SpeechBrain's ``EncoderASR`` loads,
   transcribe the held-out test speakers with it (error rates computed
   from these transcripts with SpeechBrain's ``ErrorRateStats``), time it
   side by side with the dense model
   (:func:`speechbrain_prune.costs.latency.latency_ratio`: CPU,
   ``--timing-threads`` torch threads, batch 1, 10 s of audio, the whole
   exported encoder: waveform to log-probabilities, Fbank included), and
   write a table (CSV, Markdown), the plot of error against measured
   latency and the seconds each phase took (``phases.txt``).

Authors
 * speechbrain-prune team 2026
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import torch

from speechbrain_prune.costs import count_macs, count_params

#: The CTC recipe, shipped inside the package (package data).
RECIPE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "recipes", "CTC"
)
#: Every criterion the demo can run; ``--all-criteria`` runs them all.
CRITERIA = ("taylor", "activation", "fisher", "magnitude", "random")
#: The default: the best-known criterion against the random control.
DEFAULT_CRITERIA = ("taylor", "random")
MEASURES = ("params", "latency", "macs")
N_MELS = 40
SAMPLE_RATE = 16000
TARGETS = (0.3, 0.5)

#: The demo's CRDNN (overrides of the recipe): 2 small CNN blocks, a
#: 2-layer bidirectional GRU of 256 units, a 256-unit DNN; 1.97 M params, 92 %
#: of them in the GRU. The recipe's own 16/32 CNN + 96-unit GRU is no faster
#: when pruned on a CPU: its GRU's time steps cost a fixed overhead each
#: whatever the width, and its full-resolution CNN half the time; a wider GRU
#: makes time follow width (measured in the README).
MODEL = {"cnn_channels": "(8, 16)", "rnn_neurons": 256, "dnn_neurons": 256}

#: Tiny sizes for the test suite (seconds, not minutes).
QUICK = {
    "embedded_corpus": "{n_train: 24, n_dev: 8, n_test: 8, seed: 3}",
    "batch_size": 4,
    "cnn_channels": "(8, 8)",
    "rnn_neurons": 16,
    "dnn_neurons": 16,
    "prune_scoring_batches": 2,
}

COLUMNS = (
    "criterion",
    "measure",
    "target",
    "params",
    "MMACs",
    "MAC ratio",
    "latency ms",
    "latency ratio",
    "WER",
    "CER",
    "stage s",
)


def recipe_file(*parts):
    """Path of a file of the shipped recipe; a clear error if missing.

    Example
    -------
    >>> os.path.basename(recipe_file("hparams", "train_pruned.yaml"))
    'train_pruned.yaml'
    """
    path = os.path.join(RECIPE, *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: the package was installed without its "
            "recipe files (package data); reinstall speechbrain_prune"
        )
    return path


def run_name(criterion, target=None):
    """Folder name of a run: ``dense``, ``dense_ft`` or ``taylor_30``.

    Example
    -------
    >>> run_name("taylor", 0.3), run_name("dense")
    ('taylor_30', 'dense')
    """
    return criterion if target is None else f"{criterion}_{round(target * 100)}"


def resume_dense(out, run_dir):
    """Starts ``run_dir`` from the dense run's checkpoints."""
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    shutil.copytree(
        os.path.join(out, "runs", "dense", "save"),
        os.path.join(run_dir, "save"),
    )


def run_recipe(run_dir, overrides, log, threads=None):
    """Runs the recipe's train.py into ``run_dir``; raises on failure.

    The overrides are also kept as YAML text in ``run_dir/overrides.yaml``
    (with ``output_folder``): with the recipe's YAML file they rebuild the
    run (:func:`run_hparams`). ``threads``: the run's torch threads
    (``OMP_NUM_THREADS``; default: inherited).
    """
    os.makedirs(run_dir, exist_ok=True)
    text = "\n".join(f"{k}: {v}" for k, v in overrides.items())
    with open(os.path.join(run_dir, "overrides.yaml"), "w") as f:
        f.write(text + f"\noutput_folder: {run_dir}\n")
    cmd = [
        sys.executable,
        recipe_file("train.py"),
        recipe_file("hparams", "train_pruned.yaml"),
        f"--output_folder={run_dir}",
        "--device=cpu",
    ] + [f"--{k}={v}" for k, v in overrides.items()]
    with open(log, "a") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        env = None
        if threads:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"Recipe failed; see {log}")


def run_hparams(run_dir):
    """``(YAML file, overrides text)`` of a run of the demo.

    What ``speechbrain-prune export`` and
    :func:`speechbrain_prune.export.select.load_best` take to rebuild the
    run's modules from its best checkpoint.
    """
    with open(os.path.join(run_dir, "overrides.yaml")) as f:
        overrides = f.read()
    return recipe_file("hparams", "train_pruned.yaml"), overrides


def export(run_dir, folder, card=None):
    """Exports the best checkpoint (by CER) of a run to ``folder``.

    The same code as ``speechbrain-prune export``: the recipe's YAML file
    with the run's overrides. Returns the run's modules and its pruning
    history.
    """
    from speechbrain_prune.export.select import export_recipe

    hparams_file, overrides = run_hparams(run_dir)
    res = export_recipe(
        hparams_file,
        None,
        folder,
        overrides=overrides,
        card=card,
        min_key="CER",
    )
    return res["hparams"]["modules"], res["history"]


def read_test_set(csv_file):
    """``(id, wav path, words)`` of each row of a SpeechBrain csv file."""
    with open(csv_file, newline="") as f:
        return [(r["ID"], r["wav"], r["wrd"]) for r in csv.DictReader(f)]


def error_rates(transcripts):
    """WER and CER (%) of ``(id, reference, hypothesis)`` triples.

    SpeechBrain's ``ErrorRateStats`` on words, and on the characters of
    the word sequences joined by single spaces (as the recipe does).

    Example
    -------
    >>> error_rates([("a", "ONE TWO", "ONE TOO"), ("b", "SIX", "SIX")])
    (33.33..., 10.0)
    """
    from speechbrain.utils.metric_stats import ErrorRateStats

    wer, cer = ErrorRateStats(), ErrorRateStats()
    for uid, ref, hyp in transcripts:
        ref_w, hyp_w = ref.split(), hyp.split()
        wer.append([uid], [hyp_w], [ref_w])
        cer.append([uid], [list(" ".join(hyp_w))], [list(" ".join(ref_w))])
    return wer.summarize("error_rate"), cer.summarize("error_rate")


def transcribe(asr, test_set):
    """Greedy transcripts of every utterance by an ``EncoderASR``.

    One utterance at a time (no padding), as ``transcribe_file`` does.
    Returns ``(id, reference, hypothesis)`` triples.
    """
    from speechbrain.dataio.dataio import read_audio

    rows = []
    with torch.no_grad():
        for uid, wav, words in test_set:
            sig = read_audio(wav).unsqueeze(0)
            hyp = asr.transcribe_batch(sig, torch.ones(1))[0][0]
            rows.append((uid, words, hyp))
    return rows


def write_transcripts(rows, path):
    """A tab-separated file: ``ID``, ``reference``, ``hypothesis``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["ID", "reference", "hypothesis"])
        w.writerows(rows)


def read_transcripts(path):
    """The triples written by :func:`write_transcripts`."""
    with open(path, newline="") as f:
        r = csv.reader(f, delimiter="\t")
        next(r)
        return [tuple(row) for row in r]


def encoder_run(seconds=10.0, seed=0):
    """One forward of an exported folder's encoder (waveform to
    log-probabilities: Fbank, normalisation, CRDNN, output layer) on
    ``seconds`` of audio, batch 1."""
    g = torch.Generator().manual_seed(seed)
    wav = 0.1 * torch.randn(1, int(seconds * SAMPLE_RATE), generator=g)
    lens = torch.ones(1)

    def run(mods):
        return mods.encoder(wav, lens)

    return run


def add_latency(rows, out, repeats=10, rounds=5, threads=1):
    """Times every exported model side by side with the dense one.

    :func:`~speechbrain_prune.costs.latency.latency_ratio` (the library's
    timer: ``rounds`` alternate rounds of ``repeats`` runs, medians) gives
    each model's ratio to ``dense``; its milliseconds are the dense model's
    median latency
    (:func:`~speechbrain_prune.costs.latency.measure_latency`) times the
    ratio. Timed with ``threads`` torch threads (restored after).
    """
    from speechbrain_prune.costs.latency import latency_ratio, measure_latency
    from speechbrain_prune.export import load_asr

    run = encoder_run()
    mods = {
        r["name"]: load_asr(model_folder(out, r["name"])).mods for r in rows
    }
    ref = mods[rows[0]["name"]]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        base = measure_latency(ref, run, repeats=repeats)
        for r in rows:
            ratio = (
                1.0
                if mods[r["name"]] is ref
                else latency_ratio(
                    ref, mods[r["name"]], run, repeats=repeats, rounds=rounds
                )
            )
            r["latency ms"] = base * ratio * 1000
            r["latency ratio"] = ratio
    finally:
        torch.set_num_threads(before)


def model_folder(out, name):
    """The exported folder of run ``name``."""
    return os.path.join(out, "models", name)


def plot(rows, path, threads=1):
    """WER and CER against measured latency, one line per criterion.

    Each line starts at ``dense_ft`` (the dense model trained as long),
    marked with a black star; each pruned point is labelled with its
    target (the share of the measure removed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = [r for r in rows if r["criterion"] == "dense_ft"] or [
        r for r in rows if r["criterion"] == "dense"
    ]
    dense = ref[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric in zip(axes, ("WER", "CER")):
        for crit in CRITERIA:
            pts = [dense] + [r for r in rows if r["criterion"] == crit]
            if len(pts) < 2:
                continue
            pts.sort(key=lambda r: r["target"])
            ax.plot(
                [r["latency ms"] for r in pts],
                [r[metric] for r in pts],
                marker="o",
                label=crit,
            )
            for r in pts[1:]:
                ax.annotate(
                    f"-{r['target']:.0%}",
                    (r["latency ms"], r[metric]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        ax.scatter(
            [dense["latency ms"]],
            [dense[metric]],
            color="k",
            marker="*",
            s=160,
            zorder=3,
            label="dense (same training epochs)",
        )
        ax.set_xlabel(
            f"measured CPU latency ({threads} thread"
            f"{'s' if threads > 1 else ''}, batch 1, 10 s of audio), ms"
        )
        ax.set_ylabel(f"{metric} on held-out speakers (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    measures = sorted({r["measure"] for r in rows if r["measure"] != "-"})
    fig.suptitle(
        "Structured pruning of a CRDNN (CTC): error vs measured latency"
        + (f" (targets: fewer {', '.join(measures)})" if measures else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tables(rows, out):
    """``results.csv`` and ``results.md`` in ``out``; returns the Markdown."""
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in COLUMNS})
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for k in COLUMNS:
            v = r[k]
            if isinstance(v, float):
                v = f"{v:.0%}" if k == "target" else f"{v:.2f}"
            cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md + "\n")
    return md


def read_table(out):
    """The rows of a finished demo's ``results.csv`` (numbers parsed)."""
    with open(os.path.join(out, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in COLUMNS[2:]:
            r[k] = float(r[k])
        r["params"] = int(r["params"])
        target = r["target"] or None
        r["name"] = run_name(r["criterion"], target)
    return rows


def remeasure(out, repeats=10, threads=1):
    """Times the exported models of a finished demo again; rewrites."""
    rows = read_table(out)
    add_latency(rows, out, repeats, threads=threads)
    md = write_tables(rows, out)
    plot(rows, os.path.join(out, "error_vs_latency.png"), threads)
    print(md)
    return rows


def parse_args(argv=None):
    """The demo's command line."""
    p = argparse.ArgumentParser(
        prog="speechbrain-prune demo",
        description="Train a CRDNN on embedded speech, prune it to 30 %% "
        "and 50 %% fewer parameters (each criterion), fine-tune, export, "
        "transcribe the held-out speakers, time on the CPU; table and plot "
        "of error against measured latency.",
    )
    p.add_argument("--out", default="results/demo")
    p.add_argument(
        "--data_folder",
        default=None,
        help="a LibriSpeech-layout corpus (default: embedded)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=6,
        help="training epochs of the dense model (default: %(default)s)",
    )
    p.add_argument(
        "--finetune",
        type=int,
        default=2,
        help="fine-tuning epochs after pruning (default: %(default)s)",
    )
    p.add_argument(
        "--criteria",
        nargs="+",
        default=list(DEFAULT_CRITERIA),
        choices=CRITERIA,
        help="default: %(default)s",
    )
    p.add_argument(
        "--all-criteria",
        action="store_true",
        help=f"every criterion: {', '.join(CRITERIA)} (longer)",
    )
    p.add_argument(
        "--measure",
        default="params",
        choices=MEASURES,
        help="the cost the targets cut (the recipe's prune_measure; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--targets",
        nargs="+",
        type=float,
        default=list(TARGETS),
        help="fractions of the cost removed (default: %(default)s)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs trained at once after the dense one, each with "
        "cores/jobs torch threads (default: %(default)s)",
    )
    p.add_argument(
        "--timing-threads",
        type=int,
        default=1,
        help="torch threads of the latency timing (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (a smoke test in seconds)",
    )
    p.add_argument(
        "--remeasure",
        action="store_true",
        help="only time the exported models of --out again (side by side) "
        "and rewrite the table and plot",
    )
    args = p.parse_args(argv)
    if args.all_criteria:
        args.criteria = list(CRITERIA)
    bad = [t for t in args.targets if not 0 < t < 1]
    if bad:
        p.error(f"--targets must lie in (0, 1), got {bad}")
    if args.jobs < 1 or args.timing_threads < 1:
        p.error("--jobs and --timing-threads must be at least 1")
    return args


def run_overrides(args, common, criterion, target):
    """The recipe's overrides for one run of the demo."""
    if criterion == "dense":
        return dict(
            common,
            number_of_epochs=args.epochs,
            prune_start_epoch=args.epochs + 1,
        )
    total = args.epochs + args.finetune
    if criterion == "dense_ft":
        return dict(common, number_of_epochs=total, prune_start_epoch=total + 1)
    # Resume the dense run: prune at the next epoch, fine-tune.
    return dict(
        common,
        number_of_epochs=total,
        prune_start_epoch=args.epochs + 1,
        prune_target=target,
        prune_measure=args.measure,
        prune_scorer=criterion,
    )


def main(argv=None):
    """Runs the demo; returns the rows of the table."""
    args = parse_args(argv)

    from tqdm import tqdm

    from speechbrain_prune.export import load_asr

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.remeasure:
        return remeasure(out, threads=args.timing_threads)
    common = dict(MODEL, **QUICK) if args.quick else dict(MODEL)
    common["embedded_data_folder"] = os.path.join(out, "data")
    if args.data_folder:
        common["data_folder"] = os.path.abspath(args.data_folder)
    # "dense_ft": the dense model trained as many more epochs as the pruned
    # ones are fine-tuned: the fair reference for their error rates.
    runs = [("dense", None), ("dense_ft", None)] + [
        (c, t) for c in args.criteria for t in args.targets
    ]
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    os.makedirs(os.path.join(out, "transcripts"), exist_ok=True)
    phases, start = {}, time.perf_counter()

    def train(crit, target, threads=None):
        name = run_name(crit, target)
        run_dir = os.path.join(out, "runs", name)
        if crit != "dense":
            resume_dense(out, run_dir)
        log = os.path.join(out, "logs", f"{name}.txt")
        overrides = run_overrides(args, common, crit, target)
        run_recipe(run_dir, overrides, log, threads)
        return name

    print(f"demo: training the dense model (log: {out}/logs/dense.txt)")
    train("dense", None)
    phases["corpus + dense training"] = time.perf_counter() - start
    # The other runs only share the dense checkpoint: ``--jobs`` at a time.
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train, c, t, threads) for c, t in runs[1:]]
        bar = tqdm(as_completed(futures), total=len(futures), unit="run")
        bar.set_description("demo: pruning, fine-tuning")
        for fut in bar:
            bar.set_postfix_str(fut.result())
    phases["pruning + fine-tuning runs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_set = read_test_set(
        os.path.join(out, "runs", "dense", "save", "test-clean.csv")
    )
    rows, dense_macs = [], None
    for crit, target in tqdm(runs, desc="demo: export, transcribe"):
        name = run_name(crit, target)
        card = {"test_set": "the demo's held-out speakers (eSpeak NG digits)"}
        for r in rows:
            if r["criterion"] == "dense_ft":
                card["error_rates"] = {
                    "dense, same epochs": {"WER": r["WER"], "CER": r["CER"]}
                }
        folder = model_folder(out, name)
        modules, history = export(os.path.join(out, "runs", name), folder, card)
        # The error rates: the exported model's transcripts of the test set.
        transcripts = transcribe(load_asr(folder), test_set)
        write_transcripts(
            transcripts, os.path.join(out, "transcripts", f"{name}.tsv")
        )
        wer, cer = error_rates(transcripts)
        model = torch.nn.Sequential(modules["model"], modules["output"])
        macs = count_macs(model, (1, 1000, N_MELS))
        dense_macs = dense_macs or macs
        rows.append(
            {
                "name": name,
                "criterion": crit,
                "measure": "-" if target is None else args.measure,
                "target": target or 0.0,
                "params": count_params(model),
                "MMACs": macs / 1e6,
                "MAC ratio": macs / dense_macs,
                "latency ms": float("nan"),
                "latency ratio": float("nan"),
                "WER": wer,
                "CER": cer,
                "stage s": sum(h.get("seconds", 0.0) for h in history),
            }
        )
        write_tables(rows, out)
    phases["export + transcription"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    print(f"demo: timing the exported models ({args.timing_threads} thread)")
    add_latency(
        rows,
        out,
        repeats=3 if args.quick else 10,
        rounds=2 if args.quick else 5,
        threads=args.timing_threads,
    )
    md = write_tables(rows, out)
    plot(rows, os.path.join(out, "error_vs_latency.png"), args.timing_threads)
    phases["latency timing"] = time.perf_counter() - t0
    phases["total"] = time.perf_counter() - start
    with open(os.path.join(out, "phases.txt"), "w") as f:
        for k, v in phases.items():
            f.write(f"{k}\t{v:.0f} s\n")
    print(md)
    print(
        f"\nTable: {out}/results.csv, results.md; plot: "
        f"{out}/error_vs_latency.png; transcripts: {out}/transcripts/; "
        f"seconds per phase: {out}/phases.txt; "
        f"models: {out}/models/<run>/ "
        "(load: speechbrain_prune.export.load_asr(folder))"
    )
    return rows


if __name__ == "__main__":
    main()
