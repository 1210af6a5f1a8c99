"""Schedules that cannot run, a pruner that never reaches its Brain, a target
changed on resume, too few scoring batches: an error before training or a
warning that says what happened (tiny recipe, seconds)."""

import logging
import shutil

import pytest
import torch
from tiny_recipe import build, final_state, fit

from speechbrain_prune.training.unattached import PrunerNotAttached


def count_steps(brain):
    """Counts training batches (wraps ``fit_batch``)."""
    calls = {"n": 0}
    original = brain.fit_batch

    def fit_batch(batch):
        calls["n"] += 1
        return original(batch)

    brain.fit_batch = fit_batch
    return calls


@pytest.mark.parametrize(
    "overrides, keys",
    [
        # 2 stages, 5 epochs apart: the second at epoch 6 > 2.
        (
            {"prune_start_epoch": 1, "prune_stages": 2, "prune_every": 5},
            ["n_stages=2", "every=5", "number_of_epochs", "at least 6"],
        ),
        # 3 stages, 2 epochs apart, from epoch 1: the last at epoch 5 > 2.
        (
            {"prune_start_epoch": 1, "prune_stages": 3, "prune_every": 2},
            ["n_stages=3", "every=2", "number_of_epochs", "at least 5"],
        ),
    ],
)
def test_a_schedule_that_cannot_complete_fails_before_training(
    tmp_path, overrides, keys
):
    brain, hparams, data = build(tmp_path, overrides)
    steps = count_steps(brain)
    before = final_state(brain)
    with pytest.raises(ValueError) as error:
        fit(brain, hparams, data)
    for key in keys:
        assert key in str(error.value)
    assert steps["n"] == 0
    after = final_state(brain)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_no_stage_in_this_run_is_a_warning(tmp_path, caplog):
    """All stages after the last epoch: a dense phase (resumed later with
    more epochs, as the demo's dense runs are), said loudly."""
    brain, hparams, data = build(tmp_path, {"prune_start_epoch": 10})
    steps = count_steps(brain)
    with caplog.at_level(logging.WARNING):
        fit(brain, hparams, data)
    assert "No pruning stage runs in this run" in caplog.text
    assert "start_epoch=10" in caplog.text and "unpruned" in caplog.text
    assert steps["n"] == 6 and not len(hparams["pruner"].plan)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The save folder of a finished run: stage at epoch 2 of 2, 40 %."""
    folder = tmp_path_factory.mktemp("finished")
    brain, hparams, data = build(folder)
    fit(brain, hparams, data)
    assert len(hparams["pruner"].plan) == 1
    return folder, final_state(brain), hparams["pruner"].history[0]


def resume(finished, tmp_path, **overrides):
    """A copy of the finished run, built again with ``overrides``."""
    shutil.copytree(finished[0], tmp_path / "run")
    return build(tmp_path / "run", overrides)


def test_resumed_for_more_epochs_still_runs(finished, tmp_path):
    brain, hparams, data = resume(finished, tmp_path, number_of_epochs=3)
    steps = count_steps(brain)
    fit(brain, hparams, data)
    assert steps["n"] == 3 and hparams["epoch_counter"].current == 3
    assert len(hparams["pruner"].plan) == 1


def test_half_the_yaml_edit_fails_at_the_first_step(tmp_path):
    """A pruner beside SpeechBrain's stock Checkpointer never prunes: the
    first forward of training raises, before any optimizer step."""
    brain, hparams, data = build(tmp_path, stock_checkpointer=True)
    assert hparams["pruner"].brain is None
    before = final_state(brain)
    with pytest.raises(PrunerNotAttached, match="PruningCheckpointer") as e:
        fit(brain, hparams, data)
    assert "`pruner`" in str(e.value) and "Checkpointer now" in str(e.value)
    after = final_state(brain)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not list(tmp_path.glob("CKPT+*"))


def test_raised_target_on_resume_prunes_the_rest(finished, tmp_path, caplog):
    first = finished[2]
    # 0.4 -> 0.7 after the stage ran, one more epoch.
    brain, hparams, data = resume(
        finished, tmp_path, prune_target=0.7, number_of_epochs=3
    )
    with caplog.at_level(logging.WARNING):
        fit(brain, hparams, data)
    assert "asks 70%" in caplog.text and "runs again" in caplog.text
    pruner = hparams["pruner"]
    assert len(pruner.plan) == 2
    assert pruner.history[-1]["epoch"] == 3
    assert pruner.history[-1]["macs_after"] <= 0.3 * first["base_macs"] + 1
    assert first["macs_after"] > 0.3 * first["base_macs"]


def test_lowered_target_on_resume_is_refused_before_training(
    finished, tmp_path
):
    brain, hparams, data = resume(
        finished, tmp_path, prune_target=0.2, number_of_epochs=3
    )
    steps = count_steps(brain)
    with pytest.raises(ValueError, match="`target`.*cannot come back"):
        fit(brain, hparams, data)
    assert steps["n"] == 0
    # Refused before the checkpoint's plan resized the live model.
    live = brain.modules.state_dict()
    assert any(live[k].shape != v.shape for k, v in finished[1].items())


def test_other_loops_and_too_few_scoring_batches(tmp_path, caplog):
    """A loop that is not the hparams' epoch counter is not checked; 12
    training utterances in batches of 4 give 3 batches, 50 are asked."""
    overrides = {"scoring_batches": 50, "number_of_epochs": 1}
    brain, hparams, data = build(tmp_path, overrides)
    hparams["epoch_counter"] = range(1, 3)
    with caplog.at_level(logging.WARNING):
        fit(brain, hparams, data)
    assert "`n_batches` is 50" in caplog.text
    assert "gives 3 batches of 4: scored on 3 batches" in caplog.text
    assert len(hparams["pruner"].plan) == 1
