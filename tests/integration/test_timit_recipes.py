"""The project's TIMIT recipes (recipes/TIMIT/ASR/{CTC,seq2seq}) run dense
and with a pruning stage from their YAML file, on a tiny TIMIT-layout
corpus spoken here, and on ../shared/data/timit-synth when it is there."""

import os
import re

import pytest
import recipe_runner
import torch

from speechbrain_prune.data.timit_corpus import make_timit_corpus

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RECIPES = os.path.join(ROOT, "recipes", "TIMIT", "ASR")

#: A few seconds an epoch on two CPU cores.
TINY_CORPUS = {
    "n_train": 24,
    "n_dev": 8,
    "n_test": 8,
    "n_train_speakers": 6,
    "n_dev_speakers": 2,
    "n_test_speakers": 2,
    "seed": 3,
}
TINY_MODEL = {
    "batch_size": 4,
    "num_workers": 0,
    "cnn_channels": (8, 12),
    "rnn_layers": 2,
    "rnn_neurons": 24,
    "dnn_blocks": 1,
    "dnn_neurons": 24,
}
TINY_DECODER = {
    "emb_size": 16,
    "dec_neurons": 24,
    "attn_dim": 16,
    "attn_channels": 4,
    "attn_kernel_size": 21,
    "beam_size": 2,
}
# Pruning stage at epoch 2, scored on 3 batches. Augmentation is off where
# MACs are compared: its random speed change alters the traced batch's
# length, so counts taken at different moments would not be comparable.
TINY_STAGE = {
    "prune_start_epoch": 2,
    "prune_target": 0.3,
    "prune_scoring_batches": 3,
    "augment": False,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("timit-espeak")
    make_timit_corpus(str(out), **TINY_CORPUS)
    return out


def run_in_process(kind, yaml_name, overrides):
    """What the recipe's ``__main__`` does; returns (brain, hparams)."""
    brain, hparams, datasets = recipe_runner.build(
        kind, yaml_name, overrides, recipes=RECIPES
    )
    recipe_runner.fit(brain, hparams, datasets)
    recipe_runner.evaluate(brain, hparams, datasets, min_key="PER")
    return brain, hparams


def tiny(kind, out, data, extra):
    overrides = dict(TINY_MODEL, output_folder=str(out), data_folder=str(data))
    if kind == "seq2seq":
        overrides.update(TINY_DECODER)
    overrides.update(extra)
    return overrides


def check_test_stage(out):
    """The test stage ran and wrote its PER file; returns the test PER."""
    log = (out / "train_log.txt").read_text()
    (logged,) = re.findall(r"test PER: ([0-9.e+]+)", log)
    stats = (out / "wer_test.txt").read_text()
    assert "PER stats:" in stats
    written = re.search(r"%WER ([0-9.]+) \[ (\d+) / (\d+),", stats)
    assert written, stats[:500]
    per, errors, n_phones = written.groups()
    assert float(per) == pytest.approx(float(logged), rel=1e-2)
    assert float(per) == pytest.approx(
        100 * int(errors) / int(n_phones), abs=0.01
    )
    # Reference phones of the 8 test utterances, folded to 39 classes.
    assert int(n_phones) > 8 * 5
    return float(per)


def stage_ratio(record):
    """After / unpruned, in the measure the stage counted."""
    m = record["measure"]
    return record[f"{m}_after"] / record[f"base_{m}"]


def check_stage(brain, hparams, target):
    """One stage ran; the ratio of the recipe's measure (parameters by
    default) meets the target; training went on."""
    (record,) = hparams["pruner"].history
    assert record["epoch"] == hparams["prune_start_epoch"]
    assert record["measure"] == hparams["prune_measure"] == "params"
    ratio = stage_ratio(record)
    assert 1 - target - 0.1 <= ratio <= 1 - target + 0.02, ratio
    assert record["params_after"] < record["params_before"]
    live = sum(p.numel() for p in brain.modules.parameters())
    assert live == record["params_after"]
    with open(hparams["train_log"]) as f:
        text = f.read()
    stage_line = text.index("Pruning stage 1/1 at epoch 2")
    # Training went on after the stage: every epoch from the stage's on was
    # trained and validated after it.
    for epoch in range(2, hparams["number_of_epochs"] + 1):
        assert text.index(f"epoch: {epoch},") > stage_line


@pytest.mark.parametrize("kind", ["CTC", "seq2seq"])
def test_timit_recipe_dense(kind, corpus, tmp_path):
    """train.yaml: trains (with its waveform augmentation), validates,
    tests; no pruning."""
    out = tmp_path / "out"
    overrides = tiny(kind, out, corpus, {"number_of_epochs": 2})
    brain, hparams = run_in_process(kind, "train.yaml", overrides)
    assert hparams["augment"] is True
    log = (out / "train_log.txt").read_text()
    assert "epoch: 2," in log and "Pruning" not in log
    check_test_stage(out)
    csv_rows = (out / "save" / "train.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + TINY_CORPUS["n_train"]


def test_timit_seq2seq_pruned(corpus, tmp_path):
    """train_pruned.yaml: the stage prunes the encoder inside the CTC
    epochs; the pruned encoder-decoder trains on and is tested (beam
    search)."""
    out = tmp_path / "out"
    extra = dict(TINY_STAGE, number_of_epochs=3, number_of_ctc_epochs=2)
    overrides = tiny("seq2seq", out, corpus, extra)
    brain, hparams = run_in_process("seq2seq", "train_pruned.yaml", overrides)
    check_stage(brain, hparams, TINY_STAGE["prune_target"])
    check_test_stage(out)


def test_timit_ctc_pruned_script(tmp_path):
    """The README's command, as a script, on the corpus it speaks itself
    (no ``--data_folder``): train.py unchanged, the stage from the YAML."""
    out, data = tmp_path / "out", tmp_path / "data"
    corpus = ", ".join(f"{k}: {v}" for k, v in TINY_CORPUS.items())
    args = [
        f"--output_folder={out}",
        f"--embedded_data_folder={data}",
        f"--embedded_corpus={{{corpus}}}",
        "--number_of_epochs=2",
    ]
    args += [f"--{k}={v}" for k, v in dict(TINY_MODEL, **TINY_STAGE).items()]
    folder = os.path.join(RECIPES, "CTC")
    recipe_runner.run_script(folder, "train_pruned.yaml", args, tmp_path)
    assert (data / "corpus.json").is_file()
    log = (out / "train_log.txt").read_text()
    assert log.index("epoch: 2,") > log.index("Pruning stage 1/1 at epoch 2")
    ckpts = sorted((out / "save").glob("CKPT*/pruner.ckpt"))
    (record,) = torch.load(ckpts[-1], weights_only=False)["history"]
    ratio = stage_ratio(record)
    assert 0.6 <= ratio <= 0.72, ratio
    check_test_stage(out)


def test_timit_ctc_on_timit_synth(tmp_path):
    """../shared/data/timit-synth (synthetic speech in TIMIT's layout and
    speaker lists), when present: the CTC recipe, small, pruned at epoch 2
    of 2, through the recipe's own data preparation."""
    from conftest import shared_data

    data = shared_data("timit-synth")
    out = tmp_path / "out"
    extra = dict(TINY_STAGE, number_of_epochs=2, batch_size=16)
    extra["cnn_channels"] = (8, 8)
    extra["rnn_layers"] = 1
    extra["rnn_neurons"] = 32
    extra["dnn_neurons"] = 32
    brain, hparams = run_in_process(
        "CTC", "train_pruned.yaml", tiny("CTC", out, data, extra)
    )
    rows = {
        split: len((out / "save" / f"{split}.csv").read_text().splitlines())
        for split in ("train", "dev", "test")
    }
    assert rows == {"train": 701, "dev": 101, "test": 193}
    check_stage(brain, hparams, TINY_STAGE["prune_target"])
    per = check_test_stage(out)
    assert per < 100.0
