"""A reduced main job: dense model, one criterion, both targets."""

import csv
import glob
import os
import re

import pytest

from speechbrain_prune.demo import main as demo
from speechbrain_prune.export import load_asr


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
            "0.3",
            "0.5",
        ]
    )
    return out, rows


def test_tables_and_plot_are_written(demo_run):
    out, rows = demo_run
    assert [r["criterion"] for r in rows] == [
        "dense",
        "dense_ft",
        "taylor",
        "taylor",
    ]
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    assert "| criterion |" in (out / "results.md").read_text()
    assert (out / "error_vs_macs.png").stat().st_size > 10_000


def test_macs_drop_by_the_targets(demo_run):
    _, rows = demo_run
    assert rows[1]["MAC ratio"] == 1.0  # dense, trained as long
    for r in rows[2:]:
        assert r["MAC ratio"] <= 1 - r["target"] + 0.02, r
        assert r["MAC ratio"] >= 1 - r["target"] - 0.1, r
        assert r["params"] < rows[0]["params"]


def test_error_rates_come_from_the_decoder(demo_run):
    """The WER column is the one SpeechBrain computed from each run's
    greedy transcripts (wer_test.txt), and it is not a constant."""
    out, rows = demo_run
    for r, name in zip(rows, ["dense", "dense_ft", "taylor_30", "taylor_50"]):
        text = (out / "runs" / name / "wer_test.txt").read_text()
        wer = float(re.search(r"%WER ([0-9.]+)", text).group(1))
        # The train log keeps 3 significant digits (1.24e+02).
        assert abs(wer - r["WER"]) <= 0.006 * max(1.0, wer)
    assert len({(r["WER"], r["CER"]) for r in rows}) > 1


def test_saved_pruned_model_reloads_and_transcribes(demo_run):
    out, _ = demo_run
    folder = out / "models" / "taylor_50"
    assert {"hyperparams.yaml", "plan.yaml", "model.ckpt"} <= set(
        os.listdir(folder)
    )
    asr = load_asr(folder)
    wav = sorted(
        glob.glob(str(out / "data" / "test-clean" / "*" / "*" / "*.flac"))
    )[0]
    text = asr.transcribe_file(wav)
    assert isinstance(text, str)
    assert set(text) <= set(" ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
