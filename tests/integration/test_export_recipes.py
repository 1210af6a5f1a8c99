"""``speechbrain-prune export`` on tiny runs of the recipes (CTC, seq2seq):
the best checkpoint of the final pruned structure becomes a folder that
SpeechBrain alone loads, with the pruned model's outputs."""

import glob
import os

import pytest
import speechbrain as sb
import torch
from load_exported import (
    assert_same_outputs,
    fixed_inputs,
    load_without_plugin,
)
from recipe_runner import RECIPES, TINY_CORPUS_ARG, run_script

from speechbrain_prune.cli import main as cli
from speechbrain_prune.export.select import load_best
from speechbrain_prune.training.pruner import PRUNING_STEPS

TINY = {
    "cnn_channels": "(8, 12)",
    "rnn_neurons": 24,
    "dnn_neurons": 24,
    "prune_scoring_batches": 2,
}


def run_recipe(kind, out, data):
    args = [
        f"--output_folder={out}",
        f"--embedded_data_folder={data}",
        f"--embedded_corpus={TINY_CORPUS_ARG}",
        "--number_of_epochs=3",
        "--prune_start_epoch=2",
        "--prune_target=0.4",
        "--batch_size=4",
    ]
    if kind == "CTC":
        args += [f"--{k}={v}" for k, v in TINY.items()]
    folder = os.path.join(RECIPES, kind)
    run_script(folder, "train_pruned.yaml", args, out.parent)


def reference(kind, hparams, label_encoder, wavs, lens, tokens):
    m, log_softmax = hparams["modules"], hparams["log_softmax"]
    with torch.no_grad():
        feats = m["normalize"](hparams["compute_features"](wavs), lens)
        if kind == "CTC":
            lp = log_softmax(m["output"](m["model"](feats)))
            hyps = sb.decoders.ctc_greedy_decode(lp, lens, blank_id=0)
            words = ["".join(label_encoder.decode_ndim(h)) for h in hyps]
            return {"log_probs": lp, "words": words}
        x = m["enc"](feats)
        h, _ = m["dec"](m["emb"](tokens), x, lens)
        hyps = hparams["greedy_search"](x, lens)[0]
        words = [
            "".join(label_encoder.decode_ndim([t for t in h if t != 0]))
            for h in hyps
        ]
        return {
            "ctc_log_probs": log_softmax(m["ctc_lin"](x)),
            "seq_log_probs": log_softmax(m["seq_lin"](h)),
            "words": words,
        }


@pytest.mark.parametrize("kind", ["CTC", "seq2seq"])
def test_export_command_on_a_pruned_recipe_run(kind, tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    out.mkdir()
    run_recipe(kind, out, data)
    yaml_file = os.path.join(RECIPES, kind, "hparams", "train_pruned.yaml")
    folder = tmp_path / "exported"
    overrides = [f"output_folder: {out}"]
    if kind == "CTC":
        overrides += [f"{k}: {v}" for k, v in TINY.items()]
    rc = cli(
        ["export", yaml_file, str(out / "save"), str(folder), "--min-key"]
        + ["CER", "--overrides"]
        + overrides
    )
    assert rc == 0
    # The in-memory pruned model: the same checkpoint, loaded again.
    hparams, plan, _, ckpt = load_best(
        yaml_file, out / "save", "\n".join(overrides), min_key="CER"
    )
    assert len(plan) == 1  # the final structure: after the stage
    final = [
        c
        for c in hparams["checkpointer"].list_checkpoints()
        if c.meta.get(PRUNING_STEPS) == 1
    ]
    assert ckpt.meta[PRUNING_STEPS] == 1
    assert ckpt.meta["CER"] == min(c.meta["CER"] for c in final)
    from speechbrain.dataio.encoder import CTCTextEncoder

    labels = CTCTextEncoder()
    labels.load(str(out / "save" / "label_encoder.txt"))
    wav_files = glob.glob(str(data / "test-clean" / "*/*/*.flac"))
    wavs, lens, tokens = fixed_inputs(wav_files, 29)
    ref = reference(kind, hparams, labels, wavs, lens, tokens)
    loaded = load_without_plugin(folder, (wavs, lens, tokens), tmp_path)
    assert_same_outputs(loaded, ref)
    card = (folder / "README.md").read_text()
    assert "train_pruned.yaml" in card
    assert "| pruned |" in card  # the run's test error rates
