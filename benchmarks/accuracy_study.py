#!/usr/bin/env python3
"""Accuracy study: dense vs pruned vs the pruned shape trained from scratch.

Runs the project's TIMIT CTC recipe (``recipes/TIMIT/ASR/CTC``: train.py
unchanged, its YAML files read as they are) many times side by side and
writes one table and one plot (issue 11, "accuracy at those targets";
issue 18, controls and seeds):

* ``dense``: ``hparams/train.yaml`` trained ``--epochs`` (N) epochs, one
  run per seed;
* ``dense_ft``: that checkpoint trained ``--finetune`` (M) more epochs, the
  fair reference;
* ``<criterion><target>``: the same checkpoint resumed with
  ``hparams/train_pruned.yaml``, pruned at epoch N+1 to ``target`` fewer
  parameters (``selection.target_type: params``; the measured proxy for
  CPU latency, see BENCHMARKS.md) and fine-tuned to epoch N+M;
* ``scratch_<criterion><target>``: ``hparams/train.yaml`` whose modules
  are pruned by that run's plan when the YAML is loaded (the same shapes,
  fresh weights), trained from scratch for N+M epochs.

Every run is a subprocess pinned with ``taskset`` to its own CPU core(s);
a scheduler starts runs as their inputs appear (a scratch run as soon as
its pruned run has saved the plan) and starts none that cannot end before
``--budget`` seconds. The test PER is recomputed from each run's
``wer_test.txt`` (the per-utterance edit counts). Params, MACs and CPU
latency depend on the shapes alone: each pruned run's architecture is
rebuilt from the kept widths its pruning stage logs (its checkpoint's
shapes must match, as must the scratch runs'), and all architectures are
timed side by side after training, in one process pinned to 2 cores
(2 threads, batch 1, 10 s of features; ratio to the dense model in the
same round, median over rounds). ``--collect_only`` makes the table again
from the runs' logs.

To run (GPU, as in recipes/TIMIT/ASR/CTC/README.md; about 9 minutes on
one H200)::

    python benchmarks/accuracy_study.py \\
        --data_folder ../shared/data/timit-synth --device cuda \\
        --seeds 2 --epochs 5 --finetune 3 --batch_size 16 \\
        --scratch taylor --max_parallel 8 --budget 540

    python benchmarks/accuracy_study.py --quick   # CPU dry run, minutes
    python benchmarks/accuracy_study.py --plan_only ...  # the runs, no run

Authors
 * speechbrain-prune team 2026
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "TIMIT", "ASR", "CTC")
CRITERIA = ("taylor", "fisher", "activation", "random")
TARGETS = (0.3, 0.5)
N_MELS = 40
if ROOT not in sys.path:  # the driver imports speechbrain_prune too
    sys.path.insert(0, ROOT)
MARKERS = {"taylor": "o", "fisher": "s", "activation": "^", "random": "D"}

#: A tiny model and corpus for ``--quick`` (the recipe's eSpeak corpus).
QUICK = {
    "embedded_corpus": "{n_train: 16, n_dev: 8, n_test: 8, seed: 1}",
    "batch_size": 4,
    "cnn_channels": "(8, 8)",
    "rnn_layers": 2,
    "rnn_neurons": 16,
    "dnn_blocks": 1,
    "dnn_neurons": 16,
}
QUICK_PRUNING = {"prune_scoring_batches": 2}


# YAML files of the study ------------------------------------------------------
def pruned_yaml(path):
    """``train_pruned.yaml`` whose stages count parameters.

    The recipe's selection has no ``target_type`` key (MACs by default);
    a ``prune_measure`` key is added and passed on, unless the recipe
    already has one.
    """
    with open(os.path.join(RECIPE, "hparams", "train_pruned.yaml")) as f:
        text = f.read()
    if not re.search(r"^prune_measure:", text, flags=re.M):
        block = "    selection:\n"
        if text.count(block) != 1 or "target_type" in text:
            raise RuntimeError(
                "train_pruned.yaml: expected one `selection:` block of the "
                "pruner without target_type; update accuracy_study.py"
            )
        text = text.replace(
            block, block + "        target_type: !ref <prune_measure>\n"
        )
        text = text.replace(
            "prune_scorer:", "prune_measure: params\nprune_scorer:", 1
        )
    with open(path, "w") as f:
        f.write(text)
    return path


SCRATCH_BLOCK = """
# Accuracy study (benchmarks/accuracy_study.py): the modules are pruned by
# a pruned run's plan as soon as they are built; trained from scratch.
scratch_plan: !PLACEHOLDER
scratch_pruned: !apply:speechbrain_prune.export.apply_plan
    - !ref <modules>
    - !apply:speechbrain_prune.plan.PruningPlan.to_dict
        - !apply:speechbrain_prune.plan.PruningPlan.load [!ref <scratch_plan>]
"""


def scratch_yaml(path):
    """``train.yaml`` plus a plan replayed on the freshly built modules."""
    with open(os.path.join(RECIPE, "hparams", "train.yaml")) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text + SCRATCH_BLOCK)
    return path


# Runs -------------------------------------------------------------------------
class Run:
    """One training run of the recipe (a subprocess)."""

    def __init__(self, name, kind, seed, yaml, epochs, overrides, **info):
        self.name, self.kind, self.seed = name, kind, seed
        self.yaml, self.epochs = yaml, epochs
        self.overrides = dict(overrides)
        self.info = info  # criterion, target, source, new_epochs
        self.proc = self.log = self.cores = None
        self.start = self.end = None
        self.load = 0.0  # integral of the number of runs going beside it
        self.status = "waiting"

    @property
    def folder(self):
        return self.overrides["output_folder"]

    def ready(self, runs):
        """Whether the run's inputs exist (dense checkpoint, plan)."""
        src = self.info.get("source")
        if self.kind in ("dense_ft", "pruned"):
            return runs[src].status == "done"
        if self.kind == "scratch":
            return self.plan_file() is not None or runs[src].status == "done"
        return True

    def plan_file(self):
        """Writes the source run's plan (once it has one); its path."""
        path = self.overrides["scratch_plan"]
        if os.path.isfile(path):
            return path
        plan = final_plan(os.path.join(self.info["source_folder"], "save"))
        if plan is None or len(plan) == 0:
            return None
        plan.save(path)
        return path

    def prepare(self, runs):
        """Copies the dense checkpoints where the run resumes from them."""
        if self.kind in ("dense_ft", "pruned"):
            src = os.path.join(runs[self.info["source"]].folder, "save")
            dst = os.path.join(self.folder, "save")
            shutil.rmtree(self.folder, ignore_errors=True)
            shutil.copytree(src, dst)
        elif self.kind == "scratch" and self.plan_file() is None:
            raise RuntimeError(f"{self.name}: no plan in the source run")

    def describe(self):
        """The run as the plan lists it (``--plan_only``)."""
        keys = ("number_of_epochs", "prune_start_epoch", "prune_target")
        return {
            "name": self.name,
            "kind": self.kind,
            "seed": self.seed,
            "yaml": os.path.basename(self.yaml),
            "epochs": self.epochs,
            "new_epochs": self.info["new_epochs"],
            "source": self.info.get("source"),
            **{k: self.overrides[k] for k in keys if k in self.overrides},
        }

    def command(self):
        cmd = [sys.executable, os.path.join(RECIPE, "train.py"), self.yaml]
        return cmd + [f"--{k}={v}" for k, v in self.overrides.items()]

    def launch(self, cores, threads):
        os.makedirs(self.folder, exist_ok=True)
        self.cores = cores
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
        # Many runs share one GPU: give cached blocks of varying sizes back.
        env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        cmd = self.command()
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", ",".join(map(str, cores))] + cmd
        self.log = open(os.path.join(self.folder, "stdout.txt"), "w")
        self.log.write(" ".join(cmd) + "\n")
        self.log.flush()
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        self.start = time.time()
        self.status = "running"


def final_plan(save_folder):
    """The plan of the newest checkpoint with a pruner file, or None."""
    import torch

    from speechbrain_prune.plan import PruningPlan

    ckpts = sorted(glob.glob(os.path.join(save_folder, "CKPT+*")))
    for ckpt in reversed(ckpts):
        path = os.path.join(ckpt, "pruner.ckpt")
        if not os.path.isfile(os.path.join(ckpt, "CKPT.yaml")):
            continue  # still being written
        if os.path.isfile(path):
            try:
                state = torch.load(path, weights_only=False)
            except Exception:  # half written
                continue
            return PruningPlan.from_dict(state["plan"])
    return None


def plan_runs(args, work, common):
    """All runs of the study, in the order they are started."""
    yamls = os.path.join(work, "yaml")
    os.makedirs(yamls, exist_ok=True)
    os.makedirs(os.path.join(work, "plans"), exist_ok=True)
    train = os.path.join(RECIPE, "hparams", "train.yaml")
    pruned = pruned_yaml(os.path.join(yamls, "train_pruned_params.yaml"))
    scratch = scratch_yaml(os.path.join(yamls, "train_scratch.yaml"))
    n, m = args.epochs, args.finetune
    runs = {}

    def add(name, *a, **kw):
        folder = os.path.join(work, "runs", name)
        kw_over = kw.pop("overrides", {})
        over = {**common, "output_folder": folder, **kw_over}
        runs[name] = Run(name, *a, over, **kw)

    for s in range(1, args.seeds + 1):
        add(
            f"dense_s{s}", "dense", s, train, n,
            overrides={"seed": s, "number_of_epochs": n}, new_epochs=n,
        )  # fmt: skip
    for s in range(1, args.seeds + 1):
        src = f"dense_s{s}"
        add(
            f"dense_ft_s{s}", "dense_ft", s, train, n + m, source=src,
            overrides={"seed": s, "number_of_epochs": n + m}, new_epochs=m,
        )  # fmt: skip
        for crit in args.criteria:
            for t in args.targets:
                add(
                    f"{crit}{round(t * 100)}_s{s}", "pruned", s, pruned,
                    n + m, source=src, criterion=crit, target=t,
                    overrides={
                        "seed": s,
                        "number_of_epochs": n + m,
                        "prune_start_epoch": n + 1,
                        "prune_target": t,
                        "prune_scorer": crit,
                        "prune_measure": "params",
                        **(QUICK_PRUNING if args.quick else {}),
                    },
                    new_epochs=m,
                )  # fmt: skip
    for s in range(1, args.seeds + 1):
        for crit in args.scratch:
            for t in args.targets:
                src_run = f"{crit}{round(t * 100)}_s{s}"
                add(
                    f"scratch_{src_run}", "scratch", s, scratch, n + m,
                    source=src_run, criterion=crit, target=t,
                    source_folder=os.path.join(work, "runs", src_run),
                    overrides={
                        "seed": s,
                        "number_of_epochs": n + m,
                        "scratch_plan": os.path.join(
                            work, "plans", f"{src_run}.yaml"
                        ),
                    },
                    new_epochs=n + m,
                )  # fmt: skip
    return runs


def schedule(runs, slots, threads, deadline, log):
    """Runs ``runs`` side by side, each on its own cores, until done.

    A run starts when its inputs exist and one of ``slots`` (lists of
    cores) is free, and only if it can end before ``deadline``. The
    estimate: the GPU is shared, so an epoch's time grows with the number
    of runs going at once; each finished run gives the seconds an epoch
    took per run going beside it (median of the last five), times the
    number that would be going, at least the fastest epoch seen, x1.15.
    Runs still going at the deadline are stopped.
    """
    free = list(slots)
    per_share, fastest = [], []
    last = time.time()
    while True:
        now = time.time()
        running = [r for r in runs.values() if r.status == "running"]
        for r in running:
            r.load += len(running) * (now - last)
        last = now
        for r in running:
            if r.proc.poll() is not None:
                r.end = time.time()
                r.log.close()
                free.append(r.cores)
                ok = r.proc.returncode == 0
                r.status = "done" if ok else "failed"
                if ok:
                    took = r.end - r.start
                    epoch = took / r.info["new_epochs"]
                    fastest.append(epoch)
                    per_share.append(epoch / max(1.0, r.load / took))
                log(
                    f"{r.status}: {r.name} ({r.end - r.start:.0f} s"
                    f"{'' if ok else ', see ' + r.log.name})"
                )
            elif now > deadline:
                r.proc.kill()
                r.proc.wait()
                r.status, r.end = "killed", time.time()
                r.log.close()
                free.append(r.cores)
                log(f"killed at the deadline: {r.name}")
        for r in runs.values():
            src = runs.get(r.info.get("source"))
            if r.status == "waiting" and src is not None:
                if src.status in ("failed", "killed", "skipped"):
                    r.status = "skipped"
                    log(f"skipped: {r.name} ({src.name} {src.status})")
        for r in runs.values():
            if r.status != "waiting" or not free or not r.ready(runs):
                continue
            est = 0.0
            if per_share:
                going = 1 + sum(x.status == "running" for x in runs.values())
                # Runs finish while this one goes on: count at most the
                # number that saturates the GPU (measured: about 4 stock-
                # size runs), not all of those going now.
                going = min(going, SATURATING_RUNS)
                share = statistics.median(per_share[-5:])
                epoch = max(share * going, min(fastest))
                est = 1.15 * epoch * r.info["new_epochs"]
            if time.time() + est > deadline:
                r.status = "skipped"
                log(f"skipped: {r.name} (est. {est:.0f} s, past the budget)")
                continue
            try:
                r.prepare(runs)
            except Exception as e:  # noqa: BLE001 - reported, study goes on
                r.status = "failed"
                log(f"failed: {r.name} ({e})")
                continue
            r.launch(free.pop(0), threads)
            log(f"started: {r.name} on cores {r.cores}")
        if all(r.status not in ("waiting", "running") for r in runs.values()):
            return
        time.sleep(0.5)


# Results ---------------------------------------------------------------
#: Stock-size runs that saturate one H200 (epoch time per run grows about
#: linearly beyond it): 15 s an epoch with 3 going, 27 s with 6, 55 s with 16.
SATURATING_RUNS = 4


def per_from_file(path):
    """Test PER recomputed from a recipe's ``wer_test.txt``.

    The sum of per-utterance edits over the sum of reference lengths, from
    the alignment headers of the PER section (not the summary line).
    Returns ``(per, n_utterances)``.

    Example
    -------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "wer_test.txt")
    >>> with open(p, "w") as f:
    ...     _ = f.write("CTC loss stats:\\nx\\nPER stats:\\n"
    ...                 "%WER 9 [ 9 / 99, ]\\n"
    ...                 "A, %WER 50.00 [ 1 / 2, 0 ins, 1 del, 0 sub ]\\n"
    ...                 "B, %WER 0.00 [ 0 / 2, 0 ins, 0 del, 0 sub ]\\n")
    >>> per_from_file(p)
    (25.0, 2)
    """
    with open(path) as f:
        text = f.read()
    text = text.split("PER stats:", 1)[1]
    pairs = re.findall(r"^\S+, %WER [\d.]+ \[ (\d+) / (\d+),", text, flags=re.M)
    if not pairs:
        raise ValueError(f"{path}: no per-utterance PER lines")
    edits = sum(int(e) for e, _ in pairs)
    total = sum(int(n) for _, n in pairs)
    return 100.0 * edits / total, len(pairs)


def stage_widths(train_log):
    """Kept widths of the last pruning stage a recipe's train log reports.

    Returns ``({group id: (kept, total)}, params after)``; the Pruner
    writes this table at every stage. Stages that removed whole layers
    are refused (the architecture is not rebuilt from widths then).

    Example
    -------
    >>> import tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> with open(p, "w") as f:
    ...     _ = f.write("Pruning stage 1/1 at epoch 2 (x)\\n"
    ...                 "| group | kept / total |\\n|---|---:|\\n"
    ...                 "| model.RNN.layer0 | 12 / 16 |\\n"
    ...                 "MACs 9 -> 5 (55.6% of unpruned); params 1,000 -> "
    ...                 "700 (70.0% of unpruned)\\n")
    >>> stage_widths(p)
    ({'model.RNN.layer0': (12, 16)}, 700)
    """
    with open(train_log) as f:
        text = f.read()
    if "Pruning stage" not in text:
        raise ValueError(f"{train_log}: no pruning stage")
    last = text.rsplit("Pruning stage", 1)[1]
    chosen = re.findall(r"removed layers (.*?), .*<- chosen", last)
    if chosen and chosen[0].strip() != "none":
        raise ValueError(f"{train_log}: layers removed ({chosen[0]})")
    widths = {
        g: (int(k), int(t))
        for g, k, t in re.findall(
            r"^\| (\S+) \| (\d+) / (\d+) \|$", last, flags=re.M
        )
    }
    params = re.search(r"params [\d,]+ -> ([\d,]+)", last)
    return widths, int(params.group(1).replace(",", ""))


def build_architecture(overrides, widths, folder):
    """The recipe's ``Sequential(model, output)``, pruned to ``widths``.

    Latency, MACs and parameters depend on the shapes alone, so the
    architecture of a run is rebuilt from the kept widths its train log
    reports (random weights; the last channels of each group removed).
    """
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_prune.graph import discover_groups
    from speechbrain_prune.plan import PruningPlan

    text = "\n".join(f"{k}: {v}" for k, v in overrides.items())
    text += f"\noutput_folder: {folder}"
    with open(os.path.join(RECIPE, "hparams", "train.yaml")) as f:
        hp = load_hyperpyyaml(f, text)
    root = torch.nn.ModuleDict({"model": hp["model"], "output": hp["output"]})
    if widths:
        x = torch.rand(1, 100, N_MELS)
        groups = discover_groups(root, lambda m: m.output(m.model(x)))
        sizes = {g.id: g.size for g in groups.values()}
        missing = set(widths) - set(sizes)
        if missing:
            raise ValueError(f"groups {sorted(missing)} not in the model")
        removals = {
            gid: list(range(kept, sizes[gid]))
            for gid, (kept, total) in widths.items()
            if kept < sizes[gid]
        }
        PruningPlan().prune(root, groups, removals)
    return torch.nn.Sequential(root["model"], root["output"]).eval()


def time_worker(spec_file, out_file):
    """Params, MACs and CPU latency of every architecture, in one process.

    All models run in the same rounds, side by side (the order reversed
    every other round); the latency ratio is the median over rounds of
    (model / dense model in the same round); batch 1, ``seconds`` of
    features, ``threads`` torch threads (the caller pins the process).
    """
    import torch

    from speechbrain_prune.costs import count_macs, count_params
    from speechbrain_prune.costs.latency import latency_ratio, measure_latency

    with open(spec_file) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    torch.set_flush_denormal(True)
    x = torch.rand(1, int(spec["seconds"] * 100), N_MELS)
    folder = os.path.join(os.path.dirname(spec_file), "arch")
    models, res = {}, {}
    for name, widths in spec["models"].items():
        models[name] = build_architecture(spec["overrides"], widths, folder)
        res[name] = {
            "params": count_params(models[name]),
            "macs": count_macs(models[name], run=x),
            "shapes": {
                k: list(v.shape) for k, v in models[name].state_dict().items()
            },
        }
    # The library's timer: each model side by side with the dense one
    # (alternating rounds, ratio of medians).
    dense = models["dense"]
    base = measure_latency(dense, x, repeats=spec["repeats"], warmup=1)
    for name, model in models.items():
        ratio = 1.0
        if name != "dense":
            ratio = latency_ratio(
                dense, model, x, repeats=spec["repeats"], warmup=1, rounds=3
            )
        res[name].update(latency_ms=1000 * base * ratio, latency_ratio=ratio)
    with open(out_file, "w") as f:
        json.dump(res, f)


def arch_name(r):
    """The architecture a run trained: dense, or its pruned run's."""
    if r.kind.startswith("dense"):
        return "dense"
    return r.info["source"] if r.kind == "scratch" else r.name


def measure_models(
    runs, cores, work, common, seconds, repeats, log, reuse=False
):
    """Params, MACs and CPU latency of every trained architecture.

    Rebuilt from the pruned runs' train logs and timed in one process
    pinned to 2 cores, after all training (nothing else runs then).
    """
    done = [r for r in runs.values() if r.status == "done"]
    models = {"dense": None}
    checks = {}
    for r in done:
        if r.kind == "pruned":
            widths, params = stage_widths(
                os.path.join(r.folder, "train_log.txt")
            )
            models[r.name] = widths
            checks[r.name] = params
    model_keys = {
        k: v
        for k, v in common.items()
        if k not in ("data_folder", "device", "embedded_data_folder")
        and k not in ("batch_size", "num_workers")
    }
    spec = {
        "overrides": model_keys,
        "models": models,
        "threads": 2,
        "seconds": seconds,
        "repeats": repeats,
    }
    sf = os.path.join(work, "time_spec.json")
    of = os.path.join(work, "time_out.json")
    if reuse and os.path.isfile(of) and os.path.isfile(sf):
        with open(sf) as f:
            same = json.load(f) == json.loads(json.dumps(spec))
        if same:
            log(f"timings of the same architectures reused from {of}")
            with open(of) as f:
                return json.load(f)
    with open(sf, "w") as f:
        json.dump(spec, f)
    cmd = [sys.executable, os.path.abspath(__file__), "--time-worker", sf, of]
    if shutil.which("taskset") and len(cores) >= 2:
        cmd = ["taskset", "-c", ",".join(map(str, cores[:2]))] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    log(f"timing {len(models)} architectures side by side on 2 cores")
    if subprocess.call(cmd, env=env, cwd=ROOT) != 0:
        log("timing failed")
        return {}
    with open(of) as f:
        res = json.load(f)
    for name, params in checks.items():
        if res[name]["params"] != params:
            raise RuntimeError(
                f"{name}: rebuilt with {res[name]['params']} params, the "
                f"run logged {params}"
            )
    return res


def checkpoint_shapes(folder):
    """``{key: shape}`` of a run's newest checkpoint (model + output),
    keyed as in ``Sequential(model, output)``, or None."""
    import torch

    ckpts = sorted(glob.glob(os.path.join(folder, "save", "CKPT+*")))
    if not ckpts:
        return None
    shapes = {}
    for i, key in enumerate(("model", "output")):
        state = torch.load(
            os.path.join(ckpts[-1], f"{key}.ckpt"), map_location="cpu"
        )
        for k, v in state.items():
            if torch.is_tensor(v):
                shapes[f"{i}.{k}"] = list(v.shape)
    return shapes


def collect(runs, measured):
    """One row per finished run (its architecture's costs, its test PER)."""
    rows = []
    dense = measured["dense"]
    for r in runs.values():
        if r.status != "done" or arch_name(r) not in measured:
            continue
        per, n_utt = per_from_file(os.path.join(r.folder, "wer_test.txt"))
        m = measured[arch_name(r)]
        saved = checkpoint_shapes(r.folder) if "shapes" in m else None
        if saved is not None and saved != m["shapes"]:
            diff = sorted(
                k for k in set(saved) | set(m["shapes"])
                if saved.get(k) != m["shapes"].get(k)
            )  # fmt: skip
            raise RuntimeError(
                f"{r.name}: its checkpoint's shapes differ from the "
                f"architecture timed for it at {diff[:5]}"
            )
        crit = r.info.get("criterion", r.kind)
        config = r.kind
        if r.kind in ("pruned", "scratch"):
            config = f"{crit}{round(r.info['target'] * 100)}"
            if r.kind == "scratch":
                config = "scratch_" + config
        rows.append(
            {
                "config": config,
                "kind": r.kind,
                "criterion": crit,
                "target": r.info.get("target", 0.0),
                "seed": r.seed,
                "epochs": r.epochs,
                "params": m["params"],
                "param_ratio": m["params"] / dense["params"],
                "MMACs": m["macs"] / 1e6,
                "MAC_ratio": m["macs"] / dense["macs"],
                "latency_ratio": m["latency_ratio"],
                "latency_ms": m["latency_ms"],
                "PER": per,
                "test_utts": n_utt,
                "train_s": r.end - r.start if r.end else None,
            }
        )
    return rows


def summarize(rows):
    """Mean and spread over seeds per configuration, in first-seen order."""
    configs = list(dict.fromkeys(r["config"] for r in rows))
    out = []
    for c in configs:
        rs = [r for r in rows if r["config"] == c]
        pers = [r["PER"] for r in rs]
        lats = [r["latency_ratio"] for r in rs if r["latency_ratio"]]
        out.append(
            {
                "config": c,
                "kind": rs[0]["kind"],
                "criterion": rs[0]["criterion"],
                "target": rs[0]["target"],
                "epochs": rs[0]["epochs"],
                "seeds": len(rs),
                "param_ratio": statistics.mean(r["param_ratio"] for r in rs),
                "MAC_ratio": statistics.mean(r["MAC_ratio"] for r in rs),
                "latency_ratio": statistics.mean(lats) if lats else None,
                "PER_mean": statistics.mean(pers),
                "PER_sd": statistics.stdev(pers) if len(pers) > 1 else 0.0,
                "PER_min": min(pers),
                "PER_max": max(pers),
                "per_seed": {r["seed"]: r["PER"] for r in rs},
            }
        )
    ref = next((s for s in out if s["config"] == "dense_ft"), None)
    for s in out:
        s["vs_dense_ft"] = s["verdict"] = s["paired_diff"] = ""
        if ref is None or s is ref:
            continue
        rel = 100 * (s["PER_mean"] / ref["PER_mean"] - 1)
        s["vs_dense_ft"] = f"{rel:+.1f} %"
        s["verdict"] = noise_verdict(s, ref)
        diffs = [
            per - ref["per_seed"][seed]
            for seed, per in s["per_seed"].items()
            if seed in ref["per_seed"]
        ]
        if diffs:
            sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            s["paired_diff"] = f"{statistics.mean(diffs):+.2f} ± {sd:.2f}"
    return out


def noise_verdict(a, b):
    """``within noise`` unless the means differ by more than 2 standard
    errors of their difference (seed spread; one seed: no verdict).

    Example
    -------
    >>> a = {"PER_mean": 20.0, "PER_sd": 0.5, "seeds": 3}
    >>> noise_verdict(a, {"PER_mean": 20.4, "PER_sd": 0.4, "seeds": 3})
    'within noise'
    >>> noise_verdict(a, {"PER_mean": 23.0, "PER_sd": 0.4, "seeds": 3})
    'better'
    """
    if a["seeds"] < 2 or b["seeds"] < 2:
        return "one seed"
    se = math.sqrt(
        a["PER_sd"] ** 2 / a["seeds"] + b["PER_sd"] ** 2 / b["seeds"]
    )
    diff = a["PER_mean"] - b["PER_mean"]
    if abs(diff) <= 2 * se:
        return "within noise"
    return "worse" if diff > 0 else "better"


def paired_scratch(rows):
    """Pruned minus scratch PER, paired by seed, per configuration."""
    lines = []
    by = {(r["config"], r["seed"]): r["PER"] for r in rows}
    for c in dict.fromkeys(r["config"] for r in rows if r["kind"] == "scratch"):
        pc = c.removeprefix("scratch_")
        d = [
            by[(pc, s)] - by[(c, s)]
            for (cc, s) in by
            if cc == c and (pc, s) in by
        ]
        if not d:
            continue
        sd = statistics.stdev(d) if len(d) > 1 else float("nan")
        lines.append((pc, c, statistics.mean(d), sd, len(d)))
    return lines


SUMMARY_COLUMNS = (
    "config", "epochs", "seeds", "param_ratio", "MAC_ratio",
    "latency_ratio", "PER_mean", "PER_sd", "PER_min", "PER_max",
    "vs_dense_ft", "verdict", "paired_diff",
)  # fmt: skip


def fmt(v, key=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if "ratio" not in key else f"x{v:.2f}"
    return str(v)


def write_results(rows, summary, paired, results, tag, header):
    """``accuracy_<tag>.{csv,md}`` and ``accuracy_<tag>_runs.csv``."""
    os.makedirs(results, exist_ok=True)
    base = os.path.join(results, f"accuracy_{tag}")
    with open(base + "_runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SUMMARY_COLUMNS) + ["per_seed"])
        w.writeheader()
        for s in summary:
            w.writerow({k: s[k] for k in w.fieldnames})
    lines = [header, ""]
    lines.append("| " + " | ".join(SUMMARY_COLUMNS) + " |")
    lines.append("|" + "---|" * len(SUMMARY_COLUMNS))
    for s in summary:
        lines.append(
            "| " + " | ".join(fmt(s[k], k) for k in SUMMARY_COLUMNS) + " |"
        )
    lines += [
        "",
        "latency_ratio: CPU latency / dense, measured (see above); "
        "vs_dense_ft: relative difference of the mean PER; verdict: "
        "difference of the means against 2 standard errors of the seed "
        "spread; paired_diff: PER minus dense_ft's PER of the same seed "
        "(both resume the same dense checkpoint), mean ± sd over seeds.",
    ]
    if paired:
        lines += ["", "Pruned minus scratch (same shapes), paired by seed:", ""]
        lines += ["| pruned | scratch | mean PER difference | sd | seeds |"]
        lines += ["|---|---|---|---|---|"]
        for pc, c, mean, sd, n in paired:
            lines.append(f"| {pc} | {c} | {mean:+.2f} | {sd:.2f} | {n} |")
    md = "\n".join(lines) + "\n"
    with open(base + ".md", "w") as f:
        f.write(md)
    return md


def plot(summary, path):
    """PER against measured CPU latency ratio; one marker per criterion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for s in summary:
        x = s["latency_ratio"]
        if x is None:
            continue
        kw = {"capsize": 3, "markersize": 7, "linestyle": "none"}
        if s["kind"] == "dense_ft":
            ax.errorbar(
                x,
                s["PER_mean"],
                s["PER_sd"],
                marker="*",
                color="k",
                label="dense, same epochs",
                markersize=12,
                capsize=3,
            )
            continue
        if s["kind"] == "dense":
            continue
        crit = s["criterion"]
        color = f"C{list(MARKERS).index(crit) if crit in MARKERS else 5}"
        scratch = s["kind"] == "scratch"
        ax.errorbar(
            x, s["PER_mean"], s["PER_sd"], marker=MARKERS.get(crit, "x"),
            color=color, markerfacecolor="none" if scratch else color,
            label=f"{crit}, scratch" if scratch else crit, **kw,
        )  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xlabel("CPU latency / dense (2 threads, batch 1, 10 s)")
    ax.set_ylabel("test PER (%), mean over seeds, bar: sd")
    ax.set_title("TIMIT CTC CRDNN: error vs measured latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cpu_name():
    """The CPU's model name (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


# Main ------------------------------------------------------------------
def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny CPU dry run")
    p.add_argument("--data_folder", default=None, help="TIMIT-layout corpus")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=6, help="dense epochs N")
    p.add_argument("--finetune", type=int, default=3, help="more epochs M")
    p.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    p.add_argument("--targets", nargs="+", type=float, default=list(TARGETS))
    p.add_argument(
        "--scratch",
        nargs="*",
        default=["taylor", "random"],
        help="criteria whose pruned shapes are also trained from scratch",
    )
    p.add_argument("--budget", type=float, default=3600, help="seconds")
    p.add_argument("--cores_per_run", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--work", default="results/accuracy_study")
    p.add_argument(
        "--results", default=os.path.join(ROOT, "benchmarks", "results")
    )
    p.add_argument("--tag", default=None, help="file names: accuracy_<tag>")
    p.add_argument("--latency_seconds", type=float, default=10.0)
    p.add_argument(
        "--latency_repeats", type=int, default=7, help="timing rounds"
    )
    p.add_argument(
        "--latency_reserve",
        type=float,
        default=150,
        help="seconds of the budget kept for timing and the table",
    )
    p.add_argument(
        "--max_parallel",
        type=int,
        default=None,
        help="runs at once (default: one per --cores_per_run cores; on one "
        "GPU a stock-size run saturates it at about 4 and each takes up to "
        "13 GB of its memory)",
    )
    p.add_argument("--model", nargs="*", default=[], help="key=value overrides")
    p.add_argument(
        "--collect_only",
        action="store_true",
        help="no training: table and plot from the runs already in --work "
        "(their train logs and wer_test.txt), architectures timed here",
    )
    p.add_argument(
        "--plan_only",
        action="store_true",
        help="no training: list the runs (and write <work>/plan.json)",
    )
    p.add_argument("--time-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.finetune = 1, 1, 1
        args.criteria, args.targets = ["taylor", "random"], [0.5]
        args.scratch, args.latency_repeats = ["taylor"], 3
        args.tag = args.tag or "quick"
        args.work = os.path.join(args.work, "quick")
    args.tag = args.tag or "timit_ctc"
    unknown = set(args.criteria) | set(args.scratch)
    unknown -= set(CRITERIA) | {"magnitude", "ablation"}
    if unknown or not set(args.scratch) <= set(args.criteria):
        p.error(f"--scratch must name criteria of --criteria ({unknown})")
    return args


def main(argv=None):
    args = parse(argv)
    if args.time_worker:
        return time_worker(*args.time_worker)
    t0 = time.time()
    work = os.path.abspath(args.work)
    if not (args.collect_only or args.plan_only):
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work, exist_ok=True)
    log_name = "collect_log.txt" if args.collect_only else "study_log.txt"
    if args.plan_only:
        log_name = "plan_log.txt"
    logf = open(os.path.join(work, log_name), "w")

    def log(msg):
        line = f"[{time.time() - t0:6.0f} s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    common = {"device": args.device, "batch_size": args.batch_size,
              "num_workers": 0}  # fmt: skip
    if args.data_folder:
        common["data_folder"] = os.path.abspath(args.data_folder)
    else:
        common["embedded_data_folder"] = os.path.join(work, "data")
    if args.quick:
        common.update(QUICK)
    for kv in args.model:
        k, v = kv.split("=", 1)
        common[k] = v
    runs = plan_runs(args, work, common)
    cores = sorted(os.sched_getaffinity(0))
    n = args.cores_per_run
    slots = [cores[i : i + n] for i in range(0, len(cores) - n + 1, n)]
    slots = slots[: args.max_parallel or len(slots)]
    log(f"{len(runs)} runs planned; slots {slots}; argv {sys.argv[1:]}")
    if args.plan_only:
        return write_plan(runs, work, log)
    if args.collect_only:
        mark_finished(runs, work)
    else:
        deadline = t0 + args.budget - args.latency_reserve
        schedule(runs, slots, n, deadline, log)
    measured = measure_models(
        runs, cores, work, common, args.latency_seconds,
        args.latency_repeats, log, reuse=args.collect_only,
    )  # fmt: skip
    rows = collect(runs, measured) if measured else []
    if not rows:
        log("no finished run")
        return 1
    summary = summarize(rows)
    paired = paired_scratch(rows)
    write_results(
        rows, summary, paired, args.results, args.tag,
        header(args, work, measured, t0),
    )  # fmt: skip
    plot(summary, os.path.join(args.results, f"accuracy_{args.tag}.png"))
    with open(os.path.join(args.results, f"accuracy_{args.tag}.md")) as f:
        print(f.read())
    not_done = [r.name for r in runs.values() if r.status != "done"]
    log(f"not finished: {not_done}" if not_done else "all runs finished")
    return 0


def write_plan(runs, work, log):
    """``--plan_only``: each run on one line and in ``<work>/plan.json``."""
    plan = [r.describe() for r in runs.values()]
    for d in plan:
        log(" ".join(f"{k}={v}" for k, v in d.items()))
    with open(os.path.join(work, "plan.json"), "w") as f:
        json.dump(plan, f, indent=1)
    return 0


def mark_finished(runs, work):
    """``--collect_only``: a run with a ``wer_test.txt`` is done; its
    training time is read from the study log."""
    took = {}
    path = os.path.join(work, "study_log.txt")
    if os.path.isfile(path):
        with open(path) as f:
            for name, sec in re.findall(r"done: (\S+) \((\d+) s\)", f.read()):
                took[name] = float(sec)
    for r in runs.values():
        if os.path.isfile(os.path.join(r.folder, "wer_test.txt")):
            r.status, r.start, r.end = "done", 0.0, took.get(r.name)


def header(args, work, measured, t0):
    """Commands, machines and versions above the table."""
    import torch

    lines = []
    path = os.path.join(work, "study_log.txt")
    if args.collect_only and os.path.isfile(path):
        with open(path) as f:
            first = f.readline()
        argv = re.search(r"argv (\[.*\])", first)
        if argv:
            train = " ".join(json.loads(argv.group(1).replace("'", '"')))
            lines.append(
                f"Training: `python benchmarks/accuracy_study.py {train}`"
            )
    what = "Table" if args.collect_only else "Command"
    lines.append(
        f"{what}: `python benchmarks/accuracy_study.py "
        f"{' '.join(sys.argv[1:])}`"
    )
    dev = args.device
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    lines.append(
        f"CPU timing here: {cpu_name()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}; dense model "
        f"{measured['dense']['latency_ms']:.0f} ms per 10 s of features "
        "(batch 1, 2 threads); "
        f"{time.time() - t0:.0f} s"
        + ("" if args.collect_only else f"; training device: {dev}")
    )
    return "  \n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
