"""Loads an exported folder where ``speechbrain_prune`` cannot be imported.

The recipe tests check an export the same way: fixed inputs
(:func:`fixed_inputs`), the folder loaded by SpeechBrain alone in a
subprocess (:func:`load_without_plugin`, which runs
``tests/unittests/hub_loader.py``), and its outputs compared with the
pruned model's own (:func:`assert_same_outputs`).
"""

import json
import os
import subprocess
import sys

import speechbrain as sb
import torch

LOADER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "unittests",
    "hub_loader.py",
)


def fixed_inputs(wav_files, vocab):
    """The first two of ``wav_files`` (sorted), zero-padded to one length,
    their relative lengths and five seeded tokens below ``vocab`` each."""
    sigs = [sb.dataio.dataio.read_audio(f) for f in sorted(wav_files)[:2]]
    n = max(len(s) for s in sigs)
    wavs = torch.stack(
        [torch.nn.functional.pad(s, (0, n - len(s))) for s in sigs]
    )
    lens = torch.tensor([len(s) / n for s in sigs])
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, vocab, (2, 5), generator=gen)
    return wavs, lens, tokens


def load_without_plugin(folder, inputs, work):
    """Outputs of exported ``folder`` on ``inputs`` (``wavs, lens,
    tokens``), loaded with the interface its ``config.json`` names in a
    subprocess that blocks ``import speechbrain_prune``; files go to the
    folder ``work``."""
    work = str(work)
    wavs, lens, tokens = inputs
    torch.save(
        {"wavs": wavs, "lens": lens, "tokens": tokens},
        os.path.join(work, "in.pt"),
    )
    job = {
        "source": str(folder),
        "config": os.path.join(str(folder), "config.json"),
        "savedir": os.path.join(work, "loaded"),
        "inputs": os.path.join(work, "in.pt"),
        "out": os.path.join(work, "out.pt"),
    }
    jobs = os.path.join(work, "jobs.json")
    with open(jobs, "w") as f:
        json.dump([job], f)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    res = subprocess.run(
        [sys.executable, LOADER, jobs],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = torch.load(job["out"])
    assert not any(m.startswith("speechbrain_prune") for m in loaded["modules"])
    return loaded


def assert_same_outputs(loaded, ref, tol=1e-5):
    """Tensors of ``ref`` within ``tol`` of ``loaded``'s, the rest (words,
    token lists) equal."""
    for name, value in ref.items():
        if isinstance(value, torch.Tensor):
            assert (loaded[name] - value).abs().max().item() < tol, name
        elif name == "tokens":
            assert loaded[name] == [[int(t) for t in h] for h in value]
        else:
            assert loaded[name] == value, name
