"""A reduced main job: dense model, one criterion, one target."""

import configparser
import csv
import fnmatch
import math
import os

import pytest
import torch

from speechbrain_prune import demo as demo_module
from speechbrain_prune.demo import main as demo
from speechbrain_prune.demo import read_transcripts, recipe_file, run_hparams
from speechbrain_prune.export import load_asr
from speechbrain_prune.export.select import load_best

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
NAMES = ["dense", "dense_ft", "taylor_50"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rows = demo(
        [
            "--quick",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--finetune",
            "1",
            "--criteria",
            "taylor",
            "--targets",
            "0.5",
        ]
    )
    return out, rows


def test_tables_and_plot_are_written(demo_run):
    out, rows = demo_run
    assert [r["name"] for r in rows] == NAMES
    assert [r["measure"] for r in rows] == ["-", "-", "params"]
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(t["CER"]) for t in table] == [r["CER"] for r in rows]
    assert "| criterion |" in (out / "results.md").read_text()
    assert (out / "error_vs_latency.png").stat().st_size > 10_000
    assert rows[0]["latency ratio"] == 1.0
    for r in rows:
        assert r["latency ms"] > 0 and math.isfinite(r["latency ratio"])
    phases = dict(
        line.split("\t")
        for line in (out / "phases.txt").read_text().split("\n")
        if line
    )
    assert list(phases)[-1] == "total" and len(phases) == 5
    seconds = {k: float(v.removesuffix(" s")) for k, v in phases.items()}
    total = seconds.pop("total")
    assert total == pytest.approx(sum(seconds.values()), abs=3)  # rounded


def _forward_trained(hparams, wav):
    """Log-probabilities of the recipe's modules (train.py's forward)."""
    mods = hparams["modules"]
    lens = torch.ones(wav.shape[0])
    with torch.no_grad():
        feats = hparams["compute_features"](wav)
        feats = mods["normalize"](feats, lens)
        out = mods["output"](mods["model"](feats))
        return hparams["log_softmax"](out)


@pytest.mark.parametrize("name", ["dense_ft", "taylor_50"])
def test_exported_model_equals_the_trained_one(demo_run, name):
    """The best checkpoint of the run (through the public loader of
    ``speechbrain-prune export``) and the exported folder (through
    SpeechBrain's ``EncoderASR``) give the same outputs."""
    out, _ = demo_run
    hparams_file, overrides = run_hparams(out / "runs" / name)
    hparams, plan, _, _ = load_best(
        hparams_file, overrides=overrides, min_key="CER"
    )
    assert (len(plan) > 0) == (name != "dense_ft")
    asr = load_asr(out / "models" / name)
    wav = 0.1 * torch.randn(
        2, 16000, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        exported = asr.encode_batch(wav, torch.ones(2))
    trained = _forward_trained(hparams, wav)
    assert exported.shape == trained.shape
    torch.testing.assert_close(exported, trained, atol=1e-5, rtol=0)


def _file_params(folder):
    """Parameters counted from the tensors of an exported folder's files."""
    n = 0
    for key in ("model", "output"):
        state = torch.load(folder / f"{key}.ckpt", weights_only=True)
        n += sum(
            t.numel()
            for k, t in state.items()
            if not k.endswith(
                ("running_mean", "running_var", "batches_tracked")
            )
        )
    return n


def test_pruned_model_is_measurably_smaller(demo_run):
    out, rows = demo_run
    params = {n: _file_params(out / "models" / n) for n in NAMES}
    assert params["dense"] == params["dense_ft"]
    ratio = params["taylor_50"] / params["dense"]
    assert 0.4 <= ratio <= 0.52, params  # the target: 50 % fewer params
    assert [r["params"] for r in rows] == [params[n] for n in NAMES]
    assert rows[2]["MMACs"] < rows[0]["MMACs"]


def _edits(ref, hyp):
    """Levenshtein distance of two sequences."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def test_error_rates_are_recomputed_from_the_transcripts(demo_run):
    """Each table row's WER/CER is the edit distance of the exported
    model's transcripts of the test set to its references; the
    transcripts cover the test csv and match SpeechBrain's own
    ``transcribe_file`` of the exported folder."""
    out, rows = demo_run
    with open(out / "runs" / "dense" / "save" / "test-clean.csv") as f:
        test_set = [(r["ID"], r["wav"], r["wrd"]) for r in csv.DictReader(f)]
    for r in rows:
        trans = read_transcripts(out / "transcripts" / f"{r['name']}.tsv")
        assert [(t[0], t[1]) for t in trans] == [(i, w) for i, _, w in test_set]
        words = [(t[1].split(), t[2].split()) for t in trans]
        wer = 100 * sum(_edits(a, b) for a, b in words)
        wer /= sum(len(a) for a, _ in words)
        chars = [(" ".join(a), " ".join(b)) for a, b in words]
        cer = 100 * sum(_edits(a, b) for a, b in chars)
        cer /= sum(len(a) for a, _ in chars)
        assert r["WER"] == pytest.approx(wer, abs=1e-9), r["name"]
        assert r["CER"] == pytest.approx(cer, abs=1e-9), r["name"]
    asr = load_asr(out / "models" / "taylor_50")
    trans = read_transcripts(out / "transcripts" / "taylor_50.tsv")
    for (_, wav, _), (_, _, hyp) in list(zip(test_set, trans))[:2]:
        assert asr.transcribe_file(wav) == hyp


def test_saved_pruned_model_has_its_files(demo_run):
    out, _ = demo_run
    assert {"hyperparams.yaml", "plan.yaml", "model.ckpt"} <= set(
        os.listdir(out / "models" / "taylor_50")
    )


def test_recipe_files_ship_with_the_package():
    """The demo reads its recipe inside the package, and setup.cfg's
    package data lists these files (a non-editable install has them)."""
    package = os.path.dirname(demo_module.__file__)
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    patterns = cfg["options.package_data"]["speechbrain_prune"].split()
    for parts in (("train.py",), ("hparams", "train_pruned.yaml")):
        path = recipe_file(*parts)
        rel = os.path.relpath(path, package)
        assert not rel.startswith(".."), path
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel
    with pytest.raises(FileNotFoundError, match="package data"):
        recipe_file("no_such_file.py")


def test_bad_target_is_refused_before_training(tmp_path):
    with pytest.raises(SystemExit):
        demo(["--out", str(tmp_path), "--targets", "1.5"])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("option", ["--jobs", "--timing-threads"])
def test_no_threads_is_refused_before_training(tmp_path, option):
    with pytest.raises(SystemExit):
        demo(["--out", str(tmp_path), option, "0"])
    assert not os.listdir(tmp_path)
