"""Runs one of the project's recipes in-process, as its train.py would.

The recipe files are imported, never edited: the tests drive
``ASR``/``dataio_prepare``/``prepare_data`` exactly as the recipe's
``__main__`` block does, so they can stop a run where they like. Tests of
the command itself run ``train.py`` as a script (:func:`run_script`).
"""

import importlib.util
import os
import subprocess
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RECIPES = os.path.join(ROOT, "recipes", "LibriSpeech", "ASR")

#: Tiny sizes: seconds per epoch on two CPU cores.
TINY_CORPUS = {"n_train": 24, "n_dev": 8, "n_test": 8, "seed": 3}
#: The same as a command-line override.
TINY_CORPUS_ARG = "{n_train: 24, n_dev: 8, n_test: 8, seed: 3}"


def recipe(kind, recipes=RECIPES):
    """``(train.py module, hparams folder)`` of recipe ``CTC``/``seq2seq``
    of the folder ``recipes`` (LibriSpeech's by default)."""
    folder = os.path.join(recipes, kind)
    name = os.path.relpath(folder, ROOT).replace(os.sep, "_")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, os.path.join(folder, "hparams")


def tiny_overrides(out, data, extra=None):
    """Overrides that make a recipe tiny and keep its files in ``out``."""
    o = {
        "output_folder": str(out),
        "embedded_data_folder": str(data),
        "number_of_epochs": 4,
        "batch_size": 4,
        "cnn_channels": (8, 12),
        "rnn_neurons": 24,
        "dnn_neurons": 24,
        "prune_scoring_batches": 3,
    }
    o.update(extra or {})
    return o


def build(kind, yaml_name, overrides, run_opts=None, recipes=RECIPES):
    """Loads hparams, prepares data; returns ``(brain, hparams, datasets)``."""
    module, hp_dir = recipe(kind, recipes)
    with open(os.path.join(hp_dir, yaml_name)) as f:
        hparams = load_hyperpyyaml(f, overrides)
    sb.create_experiment_directory(hparams["output_folder"])
    sb.utils.distributed.run_on_main(
        module.prepare_data, kwargs={"hparams": hparams}
    )
    datasets, label_encoder = module.dataio_prepare(hparams)
    brain = module.ASR(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=dict({"device": "cpu"}, **(run_opts or {})),
        checkpointer=hparams["checkpointer"],
    )
    brain.label_encoder = label_encoder
    return brain, hparams, datasets


def fit(brain, hparams, datasets):
    """``brain.fit`` with the recipe's loader options."""
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )


def evaluate(brain, hparams, datasets, min_key="CER"):
    """``brain.evaluate`` on the test set, best ``min_key`` checkpoint."""
    brain.evaluate(
        datasets["test"],
        min_key=min_key,
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )


def run_script(folder, yaml_name, args, cwd):
    """``python train.py hparams/<yaml_name> ARGS --device=cpu`` of the
    recipe in ``folder``, a subprocess that imports this checkout's
    ``speechbrain_prune``; fails the test unless it succeeds."""
    cmd = [
        sys.executable,
        os.path.join(folder, "train.py"),
        os.path.join(folder, "hparams", yaml_name),
        *args,
        "--device=cpu",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return res
