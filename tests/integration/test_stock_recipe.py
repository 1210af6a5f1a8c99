"""SpeechBrain's own TIMIT CTC recipe (train.py and timit_prepare.py
unchanged) gains a pruning stage from its YAML file, on the TIMIT-layout
corpus of ../shared/data through SpeechBrain's own data preparation.

SpeechBrain's recipes are not in its pip package and tests download
nothing: point ``SPEECHBRAIN_REPO`` at a checkout of speechbrain/speechbrain
to run this test (it skips otherwise, saying so).
"""

import os
import shutil
import subprocess
import sys

import pytest

#: The edit a user makes (README, docs/stock_recipes.md): a pruner, and
#: the checkpointer's class.
PRUNER = """pruner: !new:speechbrain_prune.Pruner
    scorer: !new:speechbrain_prune.scorers.TaylorScorer
        n_batches: 4
    target: 0.3
    start_epoch: 2

checkpointer: !new:speechbrain_prune.PruningCheckpointer
    pruner: !ref <pruner>
"""


def edit_stock_yaml(text):
    """The stock YAML, offline (no noise download) and with pruning."""
    start = text.index("prepare_noise_data:")
    end = text.index("# Speed perturbation")
    text = (
        text[:start]
        + "prepare_noise_data: !name:builtins.print  # offline\n\n"
        + text[end:]
    )
    text = text.replace("augmentations: 4", "augmentations: 3")
    text = text.replace("        !ref <add_noise>,\n", "")
    old = "checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer\n"
    assert old in text, "the stock recipe's checkpointer has changed"
    return text.replace(old, PRUNER)


def stock_recipe():
    repo = os.environ.get("SPEECHBRAIN_REPO")
    folder = repo and os.path.join(repo, "recipes", "TIMIT", "ASR", "CTC")
    if not folder or not os.path.isfile(os.path.join(folder, "train.py")):
        pytest.skip(
            "SPEECHBRAIN_REPO does not point at a checkout of "
            "speechbrain/speechbrain (its recipes are not in the pip package)"
        )
    return repo, folder


def test_stock_timit_ctc_recipe_gains_pruning_from_yaml(tmp_path):
    from conftest import shared_data

    data = shared_data("timit-synth")
    repo, folder = stock_recipe()
    work = tmp_path / "recipe"
    (work / "hparams").mkdir(parents=True)
    shutil.copy(os.path.join(folder, "train.py"), work / "train.py")
    shutil.copy(
        os.path.join(repo, "recipes", "TIMIT", "timit_prepare.py"),
        work / "timit_prepare.py",
    )
    with open(os.path.join(folder, "hparams", "train.yaml")) as f:
        (work / "hparams" / "train_pruned.yaml").write_text(
            edit_stock_yaml(f.read())
        )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "train.py",
        "hparams/train_pruned.yaml",
        f"--data_folder={data}",
        "--uppercase=True",
        f"--output_folder={out}",
        "--number_of_epochs=2",
        "--cnn_channels=(8, 8)",
        "--rnn_layers=1",
        "--rnn_neurons=32",
        "--dnn_neurons=32",
        "--dnn_blocks=1",
        "--batch_size=16",
        "--num_workers=0",
        "--device=cpu",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    log = (out / "train_log.txt").read_text()
    assert "Pruning stage 1/1 at epoch 2" in log
    assert "epoch: 2" in log and "test PER" in log
    # --jit is refused before any training.
    jit = [c for c in cmd if not c.startswith("--output_folder")]
    jit += ["--jit", f"--output_folder={out}_jit"]
    res = subprocess.run(jit, capture_output=True, text=True, cwd=work)
    assert res.returncode != 0
    assert "--jit (torch.jit.script) would freeze" in res.stdout + res.stderr
