"""Error rates and latency of trained recognisers in PyTorch, ONNX and int8.

The accuracy side of issue 16's goal (pruned + int8 ONNX at least 3x
faster than the dense PyTorch model at an error within +5 % relative).
Input: trained CTC folders written by ``speechbrain-prune export`` (or the
demo, ``OUT/models/<run>``) and a SpeechBrain test csv (``ID``, ``wav``,
``wrd``). Each folder is deployed (``speechbrain-prune deploy``: it gains
``model.onnx``, ``model.int8.onnx``, ``deploy.json``), then every test
utterance is transcribed, one at a time, by:

- ``EncoderASR``: SpeechBrain's own ``transcribe_batch`` (the reference
  path; not timed: it includes the filterbank);
- ``PyTorch fp32``: the folder's :class:`CTCRecognizer` (features to
  log-probabilities) + greedy CTC;
- ``PyTorch int8``: its ``quantize_dynamic`` copy (Linear, LSTM, GRU);
- ``ORT fp32`` / ``ORT int8``: ``model.onnx`` / ``model.int8.onnx`` in
  ONNX Runtime.

The last four take the filterbank features of the folder's ``Fbank``
(``deploy.json``) and decode with the shipped example's ``greedy_ctc``.
WER and CER: SpeechBrain's ``ErrorRateStats``
(:func:`speechbrain_prune.demo.error_rates`) on the transcripts, which are
written next to the table, so that anyone can recompute them.

Latency: batch 1, ``--seconds`` of the test set's speech (utterances
concatenated), features to log-probabilities; for each ``--threads``
count (PyTorch intra-op and ONNX Runtime intra-op alike) every (model,
runtime) cell runs once per round, rounds interleaved and their order
reversed every other round (``deploy_latency.time_cells``); "x ref" is the
median over rounds of the first model's PyTorch fp32 time / the cell's.

Outputs (``--out``, stem ``deploy_accuracy_<tag>``): ``.md`` (printed
too), ``.csv``, ``_transcripts.tsv`` (model, runtime, ID, reference,
hypothesis) and ``.png`` (WER against speed-up).

Example
-------
``python benchmarks/deploy_accuracy.py --demo results/demo --tag digits``
``python benchmarks/deploy_accuracy.py --models dense=D pruned=P
--test-csv test-clean.csv``

Authors
 * speechbrain-prune team 2026
"""

import argparse
import csv
import os
import statistics
import sys
import textwrap
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from deploy_latency import log, time_cells  # noqa: E402

from speechbrain_prune.costs import count_params  # noqa: E402
from speechbrain_prune.demo import error_rates, read_test_set  # noqa: E402
from speechbrain_prune.deploy import CTCRecognizer  # noqa: E402
from speechbrain_prune.deploy.folder import deploy_folder  # noqa: E402
from speechbrain_prune.deploy.onnx_export import onnx_session  # noqa: E402
from speechbrain_prune.deploy.quantize import (  # noqa: E402
    file_size,
    quantize_torch,
    torch_size,
)
from speechbrain_prune.deploy.transcribe import greedy_ctc  # noqa: E402

REFERENCE = "EncoderASR"
RUNTIMES = ("PyTorch fp32", "PyTorch int8", "ORT fp32", "ORT int8")
TRANSCRIPT_FIELDS = ["model", "runtime", "ID", "reference", "hypothesis"]


def decode(log_probs, config):
    """Greedy CTC text of one utterance's ``(frames, vocab)`` log-probs.

    Example
    -------
    >>> import numpy as np
    >>> config = {"blank_index": 0, "labels": ["<b>", "A", " ", "B"]}
    >>> decode(np.log(np.eye(4)[[1, 1, 0, 2, 3]] + 1e-3), config)
    'A B'
    """
    ids = greedy_ctc(log_probs, config["blank_index"])
    return "".join(config["labels"][i] for i in ids)


class Model:
    """One deployed folder: its recogniser in every runtime.

    ``runs[runtime](feats)``: (1, time, n_mels) features (torch) to
    log-probabilities (numpy); ``sizes[runtime]``: bytes of the weights.
    """

    def __init__(self, name, folder):
        self.name, self.folder = name, folder
        self.config = deploy_folder(folder)
        self.rec, self.asr = CTCRecognizer.from_folder(folder)
        self.int8 = quantize_torch(self.rec)
        self.fbank = self.asr.hparams.compute_features.eval()
        files = self.config["files"]
        self.paths = {
            "ORT fp32": os.path.join(folder, files["fp32"]),
            "ORT int8": os.path.join(folder, files["int8"]),
        }
        self.sizes = {
            "PyTorch fp32": torch_size(self.rec),
            "PyTorch int8": torch_size(self.int8),
            "ORT fp32": file_size(self.paths["ORT fp32"]),
            "ORT int8": file_size(self.paths["ORT int8"]),
        }
        self.params = count_params(self.rec)
        self.set_threads(None)

    def set_threads(self, threads):
        """New ONNX Runtime sessions with ``threads`` intra-op threads."""
        sessions = {
            rt: onnx_session(p, threads, spinning=False)
            for rt, p in self.paths.items()
        }
        self.runs = {
            "PyTorch fp32": self._torch(self.rec),
            "PyTorch int8": self._torch(self.int8),
        }
        for rt, sess in sessions.items():
            self.runs[rt] = self._ort(sess)

    @staticmethod
    def _torch(module):
        def run(feats):
            with torch.no_grad():
                return module(feats).numpy()

        return run

    def _ort(self, sess):
        name = self.config["input"]
        return lambda feats: sess.run(None, {name: feats.numpy()})[0]

    def features(self, wav):
        """(1, time, n_mels) filterbank features of a waveform (time,)."""
        with torch.no_grad():
            return self.fbank(wav[None])

    def transcribe(self, test_set):
        """``{runtime: [(id, reference, hypothesis)]}`` of the test set."""
        from speechbrain.dataio.dataio import read_audio

        out = {rt: [] for rt in (REFERENCE,) + RUNTIMES}
        for uid, path, words in test_set:
            wav = read_audio(path)
            with torch.no_grad():
                hyp = self.asr.transcribe_batch(wav[None], torch.ones(1))[0]
            out[REFERENCE].append((uid, words, hyp[0]))
            feats = self.features(wav)
            for rt in RUNTIMES:
                text = decode(self.runs[rt](feats)[0], self.config)
                out[rt].append((uid, words, text))
        return out


def speech(test_set, seconds, sample_rate):
    """``seconds`` of the test set's utterances, concatenated (cycled)."""
    from speechbrain.dataio.dataio import read_audio

    need, parts = int(seconds * sample_rate), []
    while sum(len(p) for p in parts) < need:
        for _, path, _ in test_set:
            parts.append(read_audio(path))
            if sum(len(p) for p in parts) >= need:
                break
    return torch.cat(parts)[:need]


def time_models(models, wav, threads, args):
    """``{(model, runtime): (median ms, x ref, best x ref, rounds)}``."""
    torch.set_num_threads(threads)
    cells = []
    for m in models:
        m.set_threads(threads)
        feats = m.features(wav)
        for rt in RUNTIMES:
            cells.append(((m.name, rt), m.runs[rt], feats))
    for _, run, feats in cells:  # warm every cell up once
        run(feats)
    log(f"timing, {threads} thread(s), {feats.shape[1]} frames")
    # time_cells runs every cell on one input; each cell keeps its own.
    wrapped = [
        {"run": (lambda _x, r=run, f=feats: r(f))} for _, run, f in cells
    ]
    times = time_cells(
        wrapped, None, args.warmup, args.repeats, args.max_seconds
    )
    base = times[0]
    out = {}
    for (key, _, _), t in zip(cells, times):
        out[key] = (
            1000 * statistics.median(t),
            statistics.median(b / v for b, v in zip(base, t)),
            min(base) / min(t),
            len(t),
        )
    return out


def measure(models, test_set, args):
    """Transcribes and times; returns ``(rows, transcripts)``."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(max(args.threads))
    transcripts, rows = [], []
    for m in models:
        log(f"transcribing {len(test_set)} utterances with {m.name}")
        for rt, triples in m.transcribe(test_set).items():
            wer, cer = error_rates(triples)
            rows.append(
                {
                    "model": m.name,
                    "params": m.params,
                    "runtime": rt,
                    "WER": round(wer, 3),
                    "CER": round(cer, 3),
                    "size_bytes": m.sizes.get(rt, ""),
                }
            )
            transcripts += [(m.name, rt) + t for t in triples]
    by = {(r["model"], r["runtime"]): r for r in rows}
    hyps = {}
    for name, rt, uid, _, hyp in transcripts:
        hyps.setdefault((name, rt), {})[uid] = hyp
    for r in rows:
        ref = hyps[r["model"], "PyTorch fp32"]
        own = hyps[r["model"], r["runtime"]]
        r["changed_vs_fp32"] = sum(own[u] != ref[u] for u in ref)
        base = by[r["model"], "PyTorch fp32"]["WER"]
        r["WER_rel_change_%"] = (
            round(100 * (r["WER"] / base - 1), 2) if base else ""
        )
    sample_rate = models[0].config["features"].get("sample_rate", 16000)
    wav = speech(test_set, args.seconds, sample_rate)
    for threads in args.threads:
        timing = time_models(models, wav, threads, args)
        for r in rows:
            key = (r["model"], r["runtime"])
            ms, x, best, n = timing.get(key, ("", "", "", ""))
            r[f"ms_{threads}t"] = round(ms, 2) if ms != "" else ""
            r[f"x_ref_{threads}t"] = round(x, 2) if x != "" else ""
            r[f"best_x_ref_{threads}t"] = round(best, 2) if best != "" else ""
            r[f"rounds_{threads}t"] = n
    return rows, transcripts


def goal_lines(rows, threads):
    """The goal, checked for every non-reference model's ORT int8 cell."""
    by = {(r["model"], r["runtime"]): r for r in rows}
    ref = rows[0]["model"]
    wer_ref = by[ref, "PyTorch fp32"]["WER"]
    lines = []
    for r in rows:
        if r["model"] == ref or r["runtime"] != "ORT int8":
            continue
        for t in threads:
            x = r[f"x_ref_{t}t"]
            rel = 100 * (r["WER"] / wer_ref - 1) if wer_ref else float("nan")
            ok = x >= 3 and rel <= 5
            lines.append(
                f"- {r['model']} ORT int8, {t} thread(s): x{x} vs {ref} "
                f"PyTorch fp32, WER {r['WER']:.2f} % vs {wer_ref:.2f} % "
                f"({rel:+.1f} % relative): goal "
                f"{'met' if ok else 'missed'} (x3 and <= +5 %)"
            )
    return lines


def format_table(rows, threads, title):
    """Markdown table of the rows and the goal check."""
    head = ["model", "params", "runtime", "WER %", "CER %", "WER rel %"]
    head += ["changed utts", "size MB"]
    for t in threads:
        head += [f"ms {t}t", f"x ref {t}t"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for r in rows:
        size = r["size_bytes"]
        vals = [
            r["model"],
            r["params"],
            r["runtime"],
            f"{r['WER']:.2f}",
            f"{r['CER']:.2f}",
            r["WER_rel_change_%"],
            r["changed_vs_fp32"],
            f"{size / 1e6:.3f}" if size != "" else "-",
        ]
        for t in threads:
            ms = r[f"ms_{t}t"]
            vals += [ms if ms != "" else "-", r[f"x_ref_{t}t"] or "-"]
        lines.append("| " + " | ".join(str(v) for v in vals) + " |")
    lines += ["", "Goal check:", ""] + goal_lines(rows, threads)
    return "\n".join(lines) + "\n"


def plot(rows, threads, path, title):
    """WER against speed-up over the reference (``threads[0]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = threads[0]
    fig, ax = plt.subplots(figsize=(7, 4))
    marks = dict(zip(RUNTIMES, "os^D"))
    for model in dict.fromkeys(r["model"] for r in rows):
        for r in rows:
            if r["model"] == model and r["runtime"] in marks:
                ax.scatter(
                    r[f"x_ref_{t}t"],
                    r["WER"],
                    marker=marks[r["runtime"]],
                    label=f"{model}, {r['runtime']}",
                )
    ax.axvline(3.0, color="k", ls="--", lw=0.8)
    ax.set_xlabel(f"speed-up over {rows[0]['model']} PyTorch fp32 ({t}t)")
    ax.set_ylabel("WER %")
    ax.set_title(textwrap.fill(title, 100), fontsize=7)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(rows, transcripts, args, title):
    """Writes the ``.md``, ``.csv``, ``_transcripts.tsv`` and ``.png``."""
    stem = os.path.join(args.out, f"deploy_accuracy_{args.tag}")
    os.makedirs(args.out, exist_ok=True)
    text = format_table(rows, args.threads, title)
    with open(stem + ".md", "w") as f:
        f.write(text)
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(stem + "_transcripts.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(TRANSCRIPT_FIELDS)
        w.writerows(transcripts)
    plot(rows, args.threads, stem + ".png", title)
    return text


def read_transcripts(path):
    """``{(model, runtime): [(id, reference, hypothesis)]}`` of a
    ``_transcripts.tsv`` file."""
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            key = (r["model"], r["runtime"])
            out.setdefault(key, []).append(
                (r["ID"], r["reference"], r["hypothesis"])
            )
    return out


def parse_args(argv=None):
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        nargs="*",
        default=[],
        help="NAME=FOLDER exported CTC folders; the first is the reference",
    )
    p.add_argument("--test-csv", help="SpeechBrain csv: ID, wav, wrd")
    p.add_argument(
        "--demo",
        help="a demo's --out folder: its models/* (dense first) and its "
        "test-clean.csv",
    )
    p.add_argument("--limit", type=int, default=0, help="first N utterances")
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--tag", default="demo")
    p.add_argument("--note", default="", help="added to the table's title")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    if args.demo:
        names = sorted(os.listdir(os.path.join(args.demo, "models")))
        names.sort(key=lambda n: (n != "dense", n))
        args.models = args.models or [
            f"{n}={os.path.join(args.demo, 'models', n)}" for n in names
        ]
        args.test_csv = args.test_csv or os.path.join(
            args.demo, "runs", "dense", "save", "test-clean.csv"
        )
    if not args.models or not args.test_csv:
        p.error("give --models and --test-csv, or --demo")
    args.models = [m.split("=", 1) for m in args.models]
    return args


def main(argv=None):
    """Runs the benchmark; returns the rows."""
    args = parse_args(argv)
    load, t0 = os.getloadavg(), time.time()
    test_set = read_test_set(args.test_csv)
    if args.limit:
        test_set = test_set[: args.limit]
    models = [Model(name, folder) for name, folder in args.models]
    rows, transcripts = measure(models, test_set, args)
    import platform

    import onnxruntime

    title = (
        f"{len(test_set)} utterances of {args.test_csv}; {args.note} "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"batch 1, {args.seconds:g} s of speech; load average (1/5/15 min) "
        f"{' '.join(f'{v:.2f}' for v in load)} at the start, "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end; "
        f"{time.time() - t0:.0f} s"
    )
    text = write_outputs(rows, transcripts, args, title)
    print(text)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
