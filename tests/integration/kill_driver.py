"""SIGKILLs a tiny pruning run at chosen moments, restarts it, compares.

Run by ``test_kill.py`` as ``python kill_driver.py OUT N_KILLS SEED``; it
writes ``OUT/report.json``. The driver imports torch and SpeechBrain once
and forks one child per run (a fresh process state each time, at no
import cost). A child runs the tiny recipe of ``tests/unittests/
tiny_recipe.py`` (2 epochs of 2 batches, a pruning stage at epoch 2, a
checkpoint after every training step and every validation).

The timeline: an uninterrupted run counts its moments (events) as they
happen: each training step, the start of the stage, each scoring batch,
the surgery, each checkpoint file write (before it and half-way through
it), each ``CKPT.yaml`` write (left empty), each completion record, each
checkpoint deletion (half-way through it). Kill points are drawn from
that timeline with a seeded RNG, at least one of every kind; a child
killed at moment K SIGKILLs itself there (``os.kill(getpid(), SIGKILL)``:
no cleanup, half-written files stay). Every killed run is restarted in
the same folder, without kills, and must end with the uninterrupted run's
plan and bit-identical weights.

Authors
 * speechbrain-prune team 2026
"""

import io
import json
import os
import random
import shutil
import signal
import sys
import time
import traceback

import torch

torch.set_num_threads(1)  # no thread pool in the parent: forks stay safe
torch.set_num_interop_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "unittests")]

import speechbrain as sb  # noqa: E402
import tiny_recipe  # noqa: E402

import speechbrain_prune.training.checkpointer as pruning_ckpt  # noqa: E402

RUN_OPTS = {"ckpt_interval_steps": 1}
SAVE = torch.save


class Moments:
    """Counts moments; SIGKILLs this process at moment ``kill_at``."""

    def __init__(self, kill_at=None):
        self.kill_at = kill_at
        self.kinds = []

    def __call__(self, kind, before_death=None):
        self.kinds.append(kind)
        if len(self.kinds) == self.kill_at:
            if before_death is not None:
                before_death()
            os.kill(os.getpid(), signal.SIGKILL)


def instrument(brain, hparams, moment):
    """Puts ``moment`` calls into the run (this child process only)."""
    fit_batch = brain.fit_batch

    def counted_fit_batch(batch):
        moment("step")
        return fit_batch(batch)

    brain.fit_batch = counted_fit_batch

    pruner = hparams["pruner"]
    run_stage = pruner.run_stage

    def counted_run_stage(*args, **kwargs):
        moment("stage")
        return run_stage(*args, **kwargs)

    pruner.run_stage = counted_run_stage
    compute = pruner.scorer.compute

    def counted_compute(root, groups, batches, loss_fn):
        def each(batch):
            moment("scoring")
            return loss_fn(batch)

        return compute(root, groups, batches, each)

    pruner.scorer.compute = counted_compute
    prune = pruner.plan.prune

    def counted_prune(*args, **kwargs):
        moment("surgery")
        return prune(*args, **kwargs)

    pruner.plan.prune = counted_prune

    def save(obj, f, *args, **kwargs):
        moment("file")
        buffer = io.BytesIO()
        SAVE(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()

        def half():
            with open(f, "wb") as out:
                out.write(data[: len(data) // 2])

        moment("half a file", half)
        with open(f, "wb") as out:
            out.write(data)

    torch.save = save
    meta = sb.utils.checkpoints.Checkpointer._save_checkpoint_metafile

    def save_meta(self, fpath, *args, **kwargs):
        moment("CKPT.yaml", lambda: open(fpath, "w").close())
        return meta(self, fpath, *args, **kwargs)

    sb.utils.checkpoints.Checkpointer._save_checkpoint_metafile = save_meta
    mark = pruning_ckpt.mark_complete

    def mark_complete(folder):
        moment("completion record")
        return mark(folder)

    pruning_ckpt.mark_complete = mark_complete
    rmtree = shutil.rmtree

    def delete(path, *args, **kwargs):
        def half():
            for f in sorted(os.listdir(path))[:2]:
                os.remove(os.path.join(path, f))

        moment("deletion", half)
        return rmtree(path, *args, **kwargs)

    sb.utils.checkpoints.shutil.rmtree = delete  # the checkpointer's only


def child(folder, kill_at, result, timeline=None):
    """One run in this (forked) process; exits 0 when it finished."""
    code = 1
    try:
        brain, hparams, data = tiny_recipe.build(
            folder, {}, n_train=8, **RUN_OPTS
        )
        moment = Moments(kill_at)
        if kill_at is not None or timeline is not None:
            instrument(brain, hparams, moment)
        tiny_recipe.fit(brain, hparams, data)
        SAVE(
            {
                "state": tiny_recipe.final_state(brain),
                "plan": hparams["pruner"].plan.to_dict(),
            },
            result,
        )
        if timeline is not None:
            with open(timeline, "w") as f:
                json.dump(moment.kinds, f)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(*args, **kwargs):
    """Forks a child running ``child(*args)``: ``"ok"``, ``"killed"``, ..."""
    pid = os.fork()
    if pid == 0:
        child(*args, **kwargs)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "killed" if sig == signal.SIGKILL else f"signal {sig}"
    code = os.WEXITSTATUS(status)
    return "ok" if code == 0 else f"exit {code}"


def kill_points(kinds, n, seed):
    """``n`` moments (1-based), at least one of every kind, seeded."""
    rng = random.Random(seed)
    by_kind = {}
    for i, kind in enumerate(kinds, start=1):
        by_kind.setdefault(kind, []).append(i)
    chosen = {rng.choice(ids) for _, ids in sorted(by_kind.items())}
    rest = [i for i in range(1, len(kinds) + 1) if i not in chosen]
    chosen.update(rng.sample(rest, max(0, n - len(chosen))))
    return sorted(chosen)


def same(result, reference):
    a = torch.load(result, weights_only=False)
    b = torch.load(reference, weights_only=False)
    return (
        a["plan"] == b["plan"]
        and a["state"].keys() == b["state"].keys()
        and all(torch.equal(a["state"][k], b["state"][k]) for k in b["state"])
    )


def main(out, n_kills, seed):
    os.makedirs(out, exist_ok=True)
    # Import what the first optimizer imports (torch._dynamo) once, here.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    start = time.time()
    reference = os.path.join(out, "reference.pt")
    timeline = os.path.join(out, "timeline.json")
    status = run(os.path.join(out, "reference"), None, reference, timeline)
    if status != "ok":
        raise RuntimeError(f"the uninterrupted run failed: {status}")
    seconds = time.time() - start
    with open(timeline) as f:
        kinds = json.load(f)
    report = {"moments": len(kinds), "reference_seconds": seconds, "runs": []}
    for k in kill_points(kinds, int(n_kills), int(seed)):
        folder = os.path.join(out, f"kill{k}")
        result = os.path.join(out, f"kill{k}.pt")
        killed = run(folder, k, result)
        restarted = run(folder, None, result)
        report["runs"].append(
            {
                "moment": k,
                "kind": kinds[k - 1],
                "first": killed,
                "restart": restarted,
                "same": restarted == "ok" and same(result, reference),
                "folders": sorted(
                    d for d in os.listdir(folder) if d.startswith("CKPT+")
                ),
            }
        )
        shutil.rmtree(folder)
    report["seconds"] = time.time() - start
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
