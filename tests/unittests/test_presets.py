"""Pruning presets: every file is what the generator writes, loads through
a recipe's ``!include:`` and builds the Pruner its name says."""

import os
import subprocess
import sys

import pytest
from hyperpyyaml import load_hyperpyyaml

from speechbrain_prune import LatencySetup, Pruner, presets
from speechbrain_prune.scorers import (
    ActivationScorer,
    FisherScorer,
    MagnitudeScorer,
    TaylorScorer,
)

SCORERS = {
    "taylor": TaylorScorer,
    "fisher": FisherScorer,
    "activation": ActivationScorer,
    "magnitude": MagnitudeScorer,
}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))

RECIPE = """\
prune_start_epoch: 3
model: !new:torch.nn.Linear [2, 2]
pruning: !include:{path}
    start_epoch: !ref <prune_start_epoch>
    scoring_batches: 4
checkpointer: !new:speechbrain_prune.PruningCheckpointer
    checkpoints_dir: {ckpt}
    pruner: !ref <pruning[pruner]>
    recoverables:
        model: !ref <model>
"""


def load_recipe(tmp_path, include, overrides=None):
    """A recipe YAML file that includes ``include``, loaded from its file."""
    yaml_file = tmp_path / "hparams" / "train.yaml"
    yaml_file.parent.mkdir(exist_ok=True)
    yaml_file.write_text(RECIPE.format(path=include, ckpt=tmp_path / "save"))
    with open(yaml_file) as f:
        return load_hyperpyyaml(f, overrides)


def test_presets_are_what_the_generator_writes():
    assert presets.stale() == []
    assert sorted(os.listdir(presets.folder())) == sorted(
        presets.preset_names()
    )
    # The repository's top-level hparams/pruning is the package's folder.
    top = os.path.join(ROOT, "hparams", "pruning")
    if os.path.exists(top):
        assert os.path.samefile(top, presets.folder())


def test_a_changed_preset_is_reported(tmp_path):
    presets.write(tmp_path)
    (tmp_path / "taylor_macs30.yaml").write_text("pruner: 1\n")
    (tmp_path / "extra.yaml").write_text("a: 1\n")
    assert presets.stale(tmp_path) == ["extra.yaml", "taylor_macs30.yaml"]


@pytest.mark.parametrize("name", presets.preset_names())
def test_every_preset_builds_its_pruner(name, tmp_path):
    hp = load_recipe(tmp_path, os.path.join(presets.folder(), name))
    pruner = hp["pruning"]["pruner"]
    criterion, rest = name[: -len(".yaml")].split("_")
    measure = rest.rstrip("0123456789")
    amount = int(rest[len(measure) :])
    assert isinstance(pruner, Pruner)
    assert hp["checkpointer"].pruner is pruner
    assert isinstance(pruner.scorer, SCORERS[criterion])
    assert pruner.selection["target_type"] == measure
    assert pruner.schedule.stages == [(3, amount / 100)]
    assert pruner.selection["min_keep_fraction"] == 0.1
    if criterion != "magnitude":  # reads no data
        assert pruner.scorer.n_batches == 4
    assert isinstance(pruner.latency, LatencySetup) == (measure == "latency")


def test_relative_include_and_command_line_overrides(tmp_path):
    presets.main(["--copy", str(tmp_path / "hparams" / "pruning")])
    hp = load_recipe(
        tmp_path,
        "pruning/fisher_params30.yaml",
        "prune_start_epoch: 5\npruning:\n    n_stages: 2\n    every: 2",
    )
    pruner = hp["pruning"]["pruner"]
    assert isinstance(pruner.scorer, FisherScorer)
    assert [epoch for epoch, _ in pruner.schedule.stages] == [5, 7]
    assert pruner.schedule.stages[-1][1] == pytest.approx(0.3)


def test_start_epoch_is_required(tmp_path):
    yaml_file = tmp_path / "train.yaml"
    path = os.path.join(presets.folder(), "taylor_macs30.yaml")
    yaml_file.write_text(f"pruning: !include:{path}\n")
    with open(yaml_file) as f, pytest.raises(ValueError, match="start_epoch"):
        load_hyperpyyaml(f)


def test_check_command_passes_on_the_installed_presets():
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run(
        [sys.executable, "-m", "speechbrain_prune.presets", "--check"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "taylor_latency50.yaml" in res.stdout
