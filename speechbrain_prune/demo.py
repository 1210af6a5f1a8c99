"""The main job: train a CRDNN recogniser, prune it with every criterion.

``speechbrain-prune demo`` runs the CTC recipe of this project
(``recipes/LibriSpeech/ASR/CTC``: train.py + ``hparams/train_pruned.yaml``,
pruning switched on from the YAML file) on speech it makes itself with
eSpeak NG, so nothing is downloaded:

1. train the dense CRDNN for ``--epochs`` epochs (its checkpoint is shared);
2. for each criterion (Taylor, activation, Fisher sensitivity, magnitude,
   random) and each target (30 % and 50 % fewer MACs), resume the dense run,
   prune at the next epoch, fine-tune ``--finetune`` epochs and test on the
   held-out speakers;
3. export every model to a folder that SpeechBrain's ``EncoderASR`` loads,
   measure its CPU latency (batch 1, 10 s of audio) side by side with the
   dense model, and write a table (CSV, Markdown) and a plot.

Authors
 * speechbrain-prune team 2026
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time

import torch

from speechbrain_prune.costs import count_macs, count_params

RECIPE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "recipes",
    "LibriSpeech",
    "ASR",
    "CTC",
)
CRITERIA = ("taylor", "activation", "fisher", "magnitude", "random")
N_MELS = 40
TARGETS = (0.3, 0.5)

#: Tiny sizes for the test suite (seconds, not minutes).
QUICK = {
    "embedded_corpus": "{n_train: 24, n_dev: 8, n_test: 8, seed: 3}",
    "batch_size": 4,
    "cnn_channels": "(8, 8)",
    "rnn_neurons": 16,
    "dnn_neurons": 16,
    "prune_scoring_batches": 2,
}


def resume_dense(out, run_dir):
    """Starts ``run_dir`` from the dense run's checkpoints."""
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    shutil.copytree(
        os.path.join(out, "runs", "dense", "save"),
        os.path.join(run_dir, "save"),
    )


def run_recipe(out, overrides, log):
    """Runs the recipe's train.py with ``overrides``; raises on failure."""
    if not os.path.isdir(RECIPE):
        raise FileNotFoundError(
            f"{RECIPE} is missing: the demo runs the recipes of a source "
            "checkout; install it with `pip install -e .` from the clone"
        )
    cmd = [
        sys.executable,
        os.path.join(RECIPE, "train.py"),
        os.path.join(RECIPE, "hparams", "train_pruned.yaml"),
        f"--output_folder={out}",
        "--device=cpu",
    ] + [f"--{k}={v}" for k, v in overrides.items()]
    with open(log, "a") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise RuntimeError(f"Recipe failed; see {log}")


def test_stats(out):
    """``(WER, CER)`` of the recipe's final test stage."""
    with open(os.path.join(out, "train_log.txt")) as f:
        lines = [ln for ln in f if "test WER" in ln]
    stats = {}
    for part in lines[-1].split(" - ")[-1].split(", "):
        key, value = part.rsplit(": ", 1)
        stats[key.strip()] = float(value)
    return stats["test WER"], stats["test CER"]


def export(out, overrides, folder, card=None):
    """Exports the run in ``out`` to ``folder`` (for ``EncoderASR``).

    The same code as ``speechbrain-prune export``: the best checkpoint
    (by CER) of the final pruned structure, written with stock
    SpeechBrain classes. Returns the run's modules and pruning history.
    """
    from speechbrain_prune.export.select import export_recipe

    # The recipe's YAML with the run's overrides, as on its command line.
    text = "\n".join(f"{k}: {v}" for k, v in overrides.items())
    text += f"\noutput_folder: {out}"
    res = export_recipe(
        os.path.join(RECIPE, "hparams", "train_pruned.yaml"),
        None,
        folder,
        overrides=text,
        card=card,
        min_key="CER",
    )
    return res["hparams"]["modules"], res["history"]


def load_exported(folder):
    """``Sequential(model, output)`` of an exported folder, weights loaded."""
    from hyperpyyaml import load_hyperpyyaml

    with open(os.path.join(folder, "hyperparams.yaml")) as f:
        hparams = load_hyperpyyaml(f)
    for key in ("model", "output"):
        hparams[key].load_state_dict(
            torch.load(os.path.join(folder, f"{key}.ckpt"))
        )
    return torch.nn.Sequential(hparams["model"], hparams["output"]).eval()


def measure_latencies(models, n_mels=40, seconds=10.0, repeats=15):
    """Median CPU latency (batch 1) of each model and its ratio to the first.

    All models run in the same rounds, the order reversed every other
    round, so that drift and other load hit all of them alike; the ratio is
    the median over rounds of (model / first model in the same round).

    Returns
    -------
    dict
        ``name -> (median seconds, median ratio)``.
    """
    x = torch.rand(1, int(seconds * 100), n_mels)
    names = list(models)
    times = {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            models[n](x)  # warm-up
        for r in range(repeats):
            for n in names if r % 2 == 0 else names[::-1]:
                t = time.perf_counter()
                models[n](x)
                times[n].append(time.perf_counter() - t)
    ref = times[names[0]]
    return {
        n: (
            statistics.median(times[n]),
            statistics.median(a / b for a, b in zip(times[n], ref)),
        )
        for n in names
    }


def add_latency(rows, out, repeats=15):
    """Times every exported model side by side; fills the latency columns."""
    models = {
        r["name"]: load_exported(os.path.join(out, "models", r["name"]))
        for r in rows
    }
    measured = measure_latencies(models, N_MELS, repeats=repeats)
    for r in rows:
        seconds, ratio = measured[r["name"]]
        r["latency ms"] = seconds * 1000
        r["latency ratio"] = ratio


def plot(rows, path):
    """Error rate vs MACs, one line per criterion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ref = [r for r in rows if r["criterion"] == "dense_ft"] or [
        r for r in rows if r["criterion"] == "dense"
    ]
    dense = ref[0]
    for crit in CRITERIA:
        pts = [dense] + [r for r in rows if r["criterion"] == crit]
        if len(pts) < 2:
            continue
        pts.sort(key=lambda r: -r["MMACs"])
        ax.plot(
            [r["MMACs"] for r in pts],
            [r["CER"] for r in pts],
            marker="o",
            label=crit,
        )
    ax.scatter(
        [dense["MMACs"]],
        [dense["CER"]],
        color="k",
        zorder=3,
        label="dense, same training epochs",
    )
    ax.set_xlabel("MACs per 10 s of audio (millions)")
    ax.set_ylabel("CER on held-out speakers (%)")
    ax.set_title("Structured pruning of a CRDNN (CTC), error vs compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


COLUMNS = (
    "criterion",
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


def remeasure(out, repeats=15):
    """Times the exported models of a finished demo again; rewrites."""
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in COLUMNS[1:]:
            r[k] = float(r[k])
        r["params"] = int(r["params"])
        r["name"] = (
            r["criterion"]
            if r["criterion"].startswith("dense")
            else f"{r['criterion']}_{round(r['target'] * 100)}"
        )
    add_latency(rows, out, repeats)
    md = write_tables(rows, out)
    plot(rows, os.path.join(out, "error_vs_macs.png"))
    print(md)
    return rows


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
                v = f"{v:.2f}" if k not in ("target",) else f"{v:.0%}"
            cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md + "\n")
    return md


def main(argv=None):
    """Runs the demo; returns the rows of the table."""
    p = argparse.ArgumentParser(
        prog="speechbrain-prune demo",
        description="Train a CRDNN on embedded speech, prune it with every "
        "criterion to 30 %% and 50 %% fewer MACs, fine-tune, test, export.",
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
        default=8,
        help="training epochs of the dense model",
    )
    p.add_argument(
        "--finetune",
        type=int,
        default=2,
        help="fine-tuning epochs after each pruning stage",
    )
    p.add_argument(
        "--criteria", nargs="+", default=list(CRITERIA), choices=CRITERIA
    )
    p.add_argument("--targets", nargs="+", type=float, default=list(TARGETS))
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

    from tqdm import tqdm

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.remeasure:
        return remeasure(out)
    log = os.path.join(out, "demo_log.txt")
    common = dict(QUICK) if args.quick else {}
    common["embedded_data_folder"] = os.path.join(out, "data")
    if args.data_folder:
        common["data_folder"] = os.path.abspath(args.data_folder)
    # "dense_ft": the dense model trained as many more epochs as the pruned
    # ones are fine-tuned: the fair reference for their error rates.
    runs = [("dense", None), ("dense_ft", None)] + [
        (c, t) for c in args.criteria for t in args.targets
    ]
    bar = tqdm(runs, desc="demo", unit="run")
    rows, dense_macs = [], None
    for crit, target in bar:
        name = crit if target is None else f"{crit}_{round(target * 100)}"
        bar.set_postfix_str(name)
        run_dir = os.path.join(out, "runs", name)
        if crit == "dense":
            overrides = dict(
                common,
                number_of_epochs=args.epochs,
                prune_start_epoch=args.epochs + 1,
            )
        elif crit == "dense_ft":
            resume_dense(out, run_dir)
            overrides = dict(
                common,
                number_of_epochs=args.epochs + args.finetune,
                prune_start_epoch=args.epochs + args.finetune + 1,
            )
        else:
            # Resume the dense run: prune at the next epoch, fine-tune.
            resume_dense(out, run_dir)
            overrides = dict(
                common,
                number_of_epochs=args.epochs + args.finetune,
                prune_start_epoch=args.epochs + 1,
                prune_target=target,
                prune_scorer=crit,
            )
        run_recipe(run_dir, overrides, log)
        wer, cer = test_stats(run_dir)
        rates = {name: {"WER": wer, "CER": cer}}
        for r in rows:
            if r["criterion"] == "dense_ft":
                rates["dense, same epochs"] = {"WER": r["WER"], "CER": r["CER"]}
        card = {
            "error_rates": rates,
            "test_set": "the demo's held-out speakers (eSpeak NG digits)",
        }
        modules, history = export(
            run_dir, overrides, os.path.join(out, "models", name), card
        )
        model = torch.nn.Sequential(modules["model"], modules["output"])
        macs = count_macs(model, (1, 1000, N_MELS))
        dense_macs = dense_macs or macs
        rows.append(
            {
                "name": name,
                "criterion": crit,
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
    add_latency(rows, out, repeats=3 if args.quick else 15)
    md = write_tables(rows, out)
    plot(rows, os.path.join(out, "error_vs_macs.png"))
    print(md)
    print(
        f"\nTable: {out}/results.csv, results.md; plot: "
        f"{out}/error_vs_macs.png; models: {out}/models/<run>/ "
        "(load: speechbrain_prune.export.load_asr(folder))"
    )
    return rows


if __name__ == "__main__":
    main()
