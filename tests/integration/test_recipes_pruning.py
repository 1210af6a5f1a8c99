"""Recipes whose train.py knows nothing of pruning gain pruning stages from
their YAML file alone; runs resume after a kill at any point."""

import os

import pytest
import torch
from recipe_runner import RECIPES, TINY_CORPUS_ARG, run_script


def _pruner_state(save_folder):
    ckpts = sorted(d for d in os.listdir(save_folder) if d.startswith("CKPT"))
    states = []
    for d in ckpts:
        path = os.path.join(save_folder, d, "pruner.ckpt")
        states.append(torch.load(path, weights_only=False))
    return states


@pytest.mark.parametrize("kind", ["CTC", "seq2seq"])
def test_recipe_gains_pruning_from_yaml(kind, tmp_path):
    """train.py run as a script; the pruning stage is declared in YAML."""
    out, data = tmp_path / "out", tmp_path / "data"
    args = [
        f"--output_folder={out}",
        f"--embedded_data_folder={data}",
        f"--embedded_corpus={TINY_CORPUS_ARG}",
        "--number_of_epochs=3",
        "--batch_size=4",
        "--prune_start_epoch=2",
        "--prune_target=0.4",
    ]
    folder = os.path.join(RECIPES, kind)
    run_script(folder, "train_pruned.yaml", args, tmp_path)
    log = (out / "train_log.txt").read_text()
    assert "Pruning stage 1/1 at epoch 2" in log
    assert "epoch: 3" in log  # training went on after the stage
    assert "test WER" in log  # the final test stage ran
    assert "WER" in (out / "wer_test.txt").read_text()
    final = _pruner_state(out / "save")[-1]
    (record,) = final["history"]
    target = 0.4
    ratio = record["macs_after"] / record["base_macs"]
    assert ratio <= 1 - target + 0.02, ratio
    assert ratio >= 1 - target - 0.1, ratio


def test_recipe_on_shared_real_digits(tmp_path):
    """Real recorded speech (../shared/data/digits-librispeech), when the
    shared corpora are present; the recipe's own data preparation."""
    from conftest import shared_data

    data = shared_data("digits-librispeech")
    out = tmp_path / "out"
    args = [
        f"--output_folder={out}",
        f"--data_folder={data}",
        "--number_of_epochs=2",
        "--prune_start_epoch=2",
        "--prune_target=0.3",
        "--batch_size=16",
        "--cnn_channels=(8, 12)",
        "--rnn_neurons=24",
        "--dnn_neurons=24",
        "--prune_scoring_batches=2",
    ]
    folder = os.path.join(RECIPES, "CTC")
    run_script(folder, "train_pruned.yaml", args, tmp_path)
    log = (out / "train_log.txt").read_text()
    assert "Pruning stage 1/1 at epoch 2" in log
    assert "test WER" in log
    rows = (out / "save" / "train-clean-100.csv").read_text().splitlines()
    assert len(rows) == 701  # header + the 700 training utterances
