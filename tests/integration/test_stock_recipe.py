"""SpeechBrain's own recipes (train.py and data preparation unchanged)
gain pruning from their YAML file, and their runs export to folders that
SpeechBrain alone loads: TIMIT CTC, TIMIT seq2seq and LibriSpeech seq2seq
(a pruning stage after its ``number_of_ctc_epochs``, resumed from a dense
checkpoint of the stock YAML), on cut-down corpora of ../shared/data.

SpeechBrain's recipes are not in its pip package and tests download
nothing: point ``SPEECHBRAIN_REPO`` at a checkout of speechbrain/speechbrain
to run these tests (they skip otherwise, saying so).
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import sentencepiece
import speechbrain as sb
import torch
from load_exported import (
    assert_same_outputs,
    fixed_inputs,
    load_without_plugin,
)
from stock_recipes import (
    checkout,
    copy_recipe,
    run,
    tiny_librispeech,
    tiny_timit,
    train_tokenizer,
)

from speechbrain_prune.cli import main as cli
from speechbrain_prune.export.select import load_best
from speechbrain_prune.training.pruner import PRUNING_STEPS

#: A tiny CRDNN, as command-line overrides (YAML keys of all three).
TINY = [
    "--cnn_channels=(8, 8)",
    "--rnn_layers=1",
    "--rnn_neurons=32",
    "--dnn_blocks=1",
    "--dnn_neurons=32",
    "--batch_size=8",
]
SEQ2SEQ = ["--emb_size=16", "--dec_neurons=32"]
VOCAB = 48  # the LibriSpeech tokenizer's size (output_neurons)


def yaml_overrides(args):
    """Command-line overrides as the YAML text ``export`` takes."""
    return [": ".join(a[2:].split("=", 1)) for a in args]


@pytest.fixture(scope="module")
def repo():
    return checkout()


@pytest.fixture(scope="module")
def timit(repo, tmp_path_factory):
    from conftest import shared_data

    src = shared_data("timit-synth")
    return tiny_timit(src, str(tmp_path_factory.mktemp("timit")), repo)


@pytest.fixture(scope="module")
def librispeech(repo, tmp_path_factory):
    from conftest import shared_data

    src = shared_data("librispeech-synth")
    sizes = {"train-clean-100": 60, "dev-clean": 8, "test-clean": 8}
    return tiny_librispeech(src, str(tmp_path_factory.mktemp("ls")), sizes)


def read_log(out):
    with open(os.path.join(out, "train_log.txt")) as f:
        return f.read()


def test_stock_timit_ctc_recipe_gains_pruning_from_yaml(repo, timit, tmp_path):
    work = copy_recipe(
        repo,
        "TIMIT",
        "CTC",
        "train.yaml",
        tmp_path / "recipe",
        "taylor_macs30.yaml",
    )
    out = str(tmp_path / "out")
    args = [
        f"--data_folder={timit}",
        "--uppercase=True",
        f"--output_folder={out}",
        "--number_of_epochs=2",
        "--num_workers=0",
    ] + TINY
    run(work, "train_pruned.yaml", args + ["--device=cpu"])
    log = read_log(out)
    assert (
        "Pruning stage 1/1 at epoch 2 (TaylorScorer, target 30% fewer "
        "MACs" in log
    )
    assert "epoch: 2" in log and "test PER" in log
    macs = re.search(r"MACs [\d,]+ -> [\d,]+ \(([\d.]+)% of unpruned", log)
    assert float(macs.group(1)) <= 70.0
    check_export(
        "ctc",
        os.path.join(work, "hparams", "train_pruned.yaml"),
        out,
        yaml_overrides(args),
        "PER",
        glob.glob(f"{timit}/TEST/*/*/*.WAV"),
        tmp_path,
    )
    # --jit is refused before any training.
    jit = [a for a in args if not a.startswith("--output_folder")]
    jit += ["--jit", "--device=cpu", f"--output_folder={out}_jit"]
    cmd = [sys.executable, "train.py", "hparams/train_pruned.yaml"] + jit
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert res.returncode != 0
    assert "--jit (torch.jit.script) would freeze" in res.stdout + res.stderr


def test_stock_timit_seq2seq_recipe_gains_pruning_from_yaml(
    repo, timit, tmp_path
):
    work = copy_recipe(
        repo,
        "TIMIT",
        "seq2seq",
        "train.yaml",
        tmp_path / "recipe",
        "magnitude_params30.yaml",
    )
    out = str(tmp_path / "out")
    args = (
        [
            f"--data_folder={timit}",
            "--uppercase=True",
            f"--output_folder={out}",
            "--number_of_epochs=2",
            "--beam_size=2",
        ]
        + TINY
        + SEQ2SEQ
    )
    run(work, "train_pruned.yaml", args + ["--device=cpu"])
    log = read_log(out)
    assert (
        "Pruning stage 1/1 at epoch 2 (MagnitudeScorer, target 30% "
        "fewer parameters" in log
    )
    params = re.search(r"params [\d,]+ -> [\d,]+ \(([\d.]+)% of unp", log)
    assert float(params.group(1)) <= 70.0
    assert "epoch: 2" in log and "test PER" in log
    check_export(
        "seq2seq",
        os.path.join(work, "hparams", "train_pruned.yaml"),
        out,
        yaml_overrides(args),
        "PER",
        glob.glob(f"{timit}/TEST/*/*/*.WAV"),
        tmp_path,
    )


def test_stock_librispeech_seq2seq_dense_run_is_resumed_and_pruned(
    repo, librispeech, tmp_path
):
    """The stock YAML trains a dense model (stock Checkpointer) through
    the CTC epochs; the edited YAML resumes it in the same folder and
    prunes after them, when the forward no longer calls ``ctc_lin``."""
    work = copy_recipe(
        repo,
        "LibriSpeech",
        "seq2seq",
        "train_BPE_1000.yaml",
        tmp_path / "recipe",
        "taylor_params30.yaml",
    )
    tok = train_tokenizer(repo, librispeech, str(tmp_path / "tok"), VOCAB)
    out = str(tmp_path / "out")
    args = (
        [
            f"--data_folder={librispeech}",
            f"--output_folder={out}",
            "--train_splits=[train-clean-100]",
            "--dev_splits=[dev-clean]",
            "--test_splits=[test-clean]",
            # prepare_librispeech writes the csv files to output_folder.
            f"--train_csv={out}/train.csv",
            f"--valid_csv={out}/dev-clean.csv",
            f"--test_csv=[{out}/test-clean.csv]",
            f"--pretrained_lm_tokenizer_path={tok}",
            f"--output_neurons={VOCAB}",
            "--number_of_ctc_epochs=1",
            "--valid_beam_size=2",
            "--test_beam_size=2",
            "--num_workers=0",
        ]
        + TINY
        + SEQ2SEQ
    )
    run(work, "train.yaml", args + ["--number_of_epochs=1", "--device=cpu"])
    save = os.path.join(out, "save")
    (dense,) = glob.glob(os.path.join(save, "CKPT+*"))
    dense_state = torch.load(os.path.join(dense, "model.ckpt"))
    assert not os.path.exists(os.path.join(dense, "pruner.ckpt"))

    args.append("--number_of_epochs=2")
    run(work, "train_pruned.yaml", args + ["--device=cpu"])
    log = read_log(out)
    assert log.count("epoch: 1,") == 1  # resumed, not trained again
    assert "Pruning stage 1/1 at epoch 2 (TaylorScorer" in log
    # The stage starts from the dense model's size (nothing pruned yet).
    before, after, pct = re.search(
        r"params ([\d,]+) -> ([\d,]+) \(([\d.]+)% of unpruned\)", log
    ).groups()
    before, after = (int(n.replace(",", "")) for n in (before, after))
    assert after / before == pytest.approx(float(pct) / 100, abs=1e-3)
    final = [c for c in glob.glob(os.path.join(save, "CKPT+*")) if c != dense]
    assert len(final) == 1
    pruned_state = torch.load(os.path.join(final[0], "model.ckpt"))
    # ctc_lin (model[3]), skipped after epoch 1, lost the encoder's columns.
    assert pruned_state["3.w.weight"].shape[1] < 32
    # The dense checkpoint is kept as it was.
    again = torch.load(os.path.join(dense, "model.ckpt"))
    assert all(torch.equal(again[k], v) for k, v in dense_state.items())
    check_export(
        "seq2seq",
        os.path.join(work, "hparams", "train_pruned.yaml"),
        out,
        yaml_overrides(args),
        "WER",
        glob.glob(f"{librispeech}/test-clean/*/*/*.flac"),
        tmp_path,
        sentencepiece_model=os.path.join(tok, "tokenizer.ckpt"),
    )


# Export ----------------------------------------------------------------------
def reference(shape, hparams, searcher_key, wavs, lens, tokens):
    """The pruned model's outputs, in this process (with the plugin)."""
    m, log_softmax = hparams["modules"], hparams["log_softmax"]
    with torch.no_grad():
        feats = m["normalize"](hparams["compute_features"](wavs), lens)
        if shape == "ctc":
            lp = log_softmax(m["output"](m["model"](feats)))
            hyps = sb.decoders.ctc_greedy_decode(
                lp, lens, blank_id=hparams["blank_index"]
            )
            return {"log_probs": lp, "tokens": hyps}
        x = m["enc"](feats)
        h, _ = m["dec"](m["emb"](tokens), x, lens)
        hyps = hparams[searcher_key](x, lens)[0]
        return {
            "ctc_log_probs": log_softmax(m["ctc_lin"](x)),
            "seq_log_probs": log_softmax(m["seq_lin"](h)),
            "tokens": [[int(t) for t in hyp] for hyp in hyps],
        }


def check_export(
    shape,
    yaml_file,
    out,
    overrides,
    key,
    wav_files,
    tmp_path,
    sentencepiece_model=None,
):
    """``speechbrain-prune export`` of the run; the folder, loaded where
    ``speechbrain_prune`` cannot be imported, computes what the pruned
    model computes and transcribes the same."""
    folder = tmp_path / "exported"
    save = os.path.join(out, "save")
    rc = cli(
        ["export", yaml_file, save, str(folder), "--min-key", key]
        + ["--overrides"]
        + overrides
    )
    assert rc == 0
    hparams, plan, _, ckpt = load_best(
        yaml_file, save, "\n".join(overrides), min_key=key
    )
    assert len(plan) == 1 and ckpt.meta[PRUNING_STEPS] == 1
    with open(folder / "config.json") as f:
        interface = json.load(f)["speechbrain"]["interface"]
    assert (
        interface
        == {"ctc": "EncoderASR", "seq2seq": "EncoderDecoderASR"}[shape]
    )
    searcher_key = next(
        (k for k in ("test_search", "test_searcher") if k in hparams), None
    )
    vocab = hparams["output_neurons"]
    wavs, lens, tokens = fixed_inputs(wav_files, vocab)
    ref = reference(shape, hparams, searcher_key, wavs, lens, tokens)
    loaded = load_without_plugin(folder, (wavs, lens, tokens), tmp_path)
    assert_same_outputs(loaded, ref)
    if sentencepiece_model:  # the recipe's own tokenizer decodes the same
        sp = sentencepiece.SentencePieceProcessor(
            model_file=sentencepiece_model
        )
        assert loaded["words"] == [sp.decode_ids(t) for t in ref["tokens"]]
    card = (folder / "README.md").read_text()
    assert "| pruned |" in card  # the run's test error rates
