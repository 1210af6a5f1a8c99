"""Kill a pruning run anywhere, start it again: same shapes, same weights
(CPU, same seed) as a run that was never interrupted."""

import pytest
import torch
from recipe_runner import TINY_CORPUS, build, evaluate, fit, tiny_overrides

from speechbrain_prune.training.pruner import PRUNING_STEPS


class Killed(Exception):
    """Stands for the process being killed."""


def overrides(tmp_path, data, **extra):
    o = tiny_overrides(
        tmp_path,
        data,
        {
            "embedded_corpus": TINY_CORPUS,
            "prune_start_epoch": 2,
            "prune_target": 0.4,
        },
    )
    o.update(extra)
    return o


def final_state(brain):
    return {
        k: v.clone()
        for k, v in brain.modules.state_dict().items()
        if not k.startswith("normalize")
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    data = base / "data"
    brain, hparams, datasets = build(
        "CTC", "train_pruned.yaml", overrides(base / "full", data)
    )
    fit(brain, hparams, datasets)
    return data, final_state(brain), (brain, hparams, datasets)


def assert_same(state, reference):
    assert state.keys() == reference.keys()
    for k in reference:
        assert state[k].shape == reference[k].shape, k
        assert torch.equal(state[k], reference[k]), k


def kill_before_stage(brain, hparams):
    hparams["epoch_counter"].limit = 1  # stops after epoch 1, before stage


def kill_after_stage_epoch_end(brain, hparams):
    hparams["epoch_counter"].limit = 2


def kill_during_stage(brain, hparams):
    scorer = hparams["pruner"].scorer

    def compute(*args, **kwargs):
        raise Killed("killed while scoring")

    scorer.compute = compute


def kill_mid_epoch_after_stage(brain, hparams):
    calls = {"n": 0}
    original = brain.fit_batch

    def fit_batch(batch):
        calls["n"] += 1
        if calls["n"] == 6 + 3:  # 6 steps in epoch 1, 3 into epoch 2
            raise Killed("killed mid-epoch")
        return original(batch)

    brain.fit_batch = fit_batch


@pytest.mark.parametrize(
    "kill",
    [
        kill_before_stage,
        kill_during_stage,
        kill_after_stage_epoch_end,
        kill_mid_epoch_after_stage,
    ],
)
def test_resume_equals_uninterrupted(kill, uninterrupted, tmp_path):
    data, reference, _ = uninterrupted
    opts = overrides(tmp_path / "run", data)
    run_opts = {"ckpt_interval_steps": 1}
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", opts, run_opts)
    kill(brain, hparams)
    try:
        fit(brain, hparams, datasets)
    except Killed:
        pass
    # A new process: everything built again from the YAML file.
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", opts, run_opts)
    fit(brain, hparams, datasets)
    assert len(hparams["pruner"].plan) == 1
    assert_same(final_state(brain), reference)


def test_evaluate_loads_best_of_final_structure(uninterrupted):
    """Checkpoints of both structures exist; evaluate(min_key=...) loads the
    best checkpoint of the final structure, even where an earlier, less
    pruned checkpoint has a better CER."""
    _, reference, (brain, hparams, datasets) = uninterrupted
    ckpt = brain.checkpointer
    ckpts = ckpt.list_checkpoints()
    assert {c.meta.get(PRUNING_STEPS, 0) for c in ckpts} == {0, 1}
    # Make the earlier structure's checkpoint the best by CER.
    early = [c for c in ckpts if c.meta[PRUNING_STEPS] == 0][0]
    early.meta["CER"] = -1.0
    ckpt.list_checkpoints = lambda: ckpts
    chosen = ckpt.find_checkpoint(min_key="CER")
    assert chosen.meta[PRUNING_STEPS] == 1
    final = [c for c in ckpts if c.meta[PRUNING_STEPS] == 1]
    assert chosen.meta["CER"] == min(c.meta["CER"] for c in final)
    evaluate(brain, hparams, datasets)
    log = open(hparams["train_log"]).read()
    assert "test CER" in log
    for k, v in final_state(brain).items():
        assert v.shape == reference[k].shape, k
