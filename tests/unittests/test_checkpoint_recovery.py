"""Interrupted or damaged checkpoints are skipped with a warning; the newest
good one loads; nothing is deleted that the user did not ask to delete."""

import logging
import shutil

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_prune.training import Pruner, PruningCheckpointer
from speechbrain_prune.training.checkpointer import COMPLETE_FILE


def checkpointer(folder, seed, stock=False):
    """A checkpointer of one Linear (weights from ``seed``) and a pruner."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 4)
    if stock:
        return Checkpointer(folder, {"model": model}), model
    pruner = Pruner("magnitude", target=0.3)
    return PruningCheckpointer(folder, {"model": model}, pruner=pruner), model


def two_checkpoints(folder, stock=False):
    """Saves an old and a new checkpoint (other weights); returns them."""
    ckpt, model = checkpointer(folder, 1, stock)
    old = ckpt.save_checkpoint()
    old_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    new = ckpt.save_checkpoint()
    return old, old_state, new


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def files_of(folder):
    return sorted(p.name for p in folder.iterdir())


DAMAGES = {
    # A save killed before its last file: no completion record.
    "killed save": lambda c: (c / COMPLETE_FILE).unlink(),
    "truncated model.ckpt": lambda c: truncate(c / "model.ckpt"),
    "truncated pruner.ckpt": lambda c: truncate(c / "pruner.ckpt", 0.9),
    "empty CKPT.yaml": lambda c: (c / "CKPT.yaml").write_text(""),
    "partial CKPT.yaml": lambda c: (c / "CKPT.yaml").write_text("unixtime"),
    # A deletion (rmtree) killed half-way.
    "deleted model.ckpt": lambda c: (c / "model.ckpt").unlink(),
    "unreadable record": lambda c: (c / COMPLETE_FILE).write_text("{"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_newest_good_checkpoint_loads(tmp_path, caplog, damage):
    old, old_state, new = two_checkpoints(tmp_path)
    DAMAGES[damage](new.path)
    before = files_of(new.path)
    ckpt, model = checkpointer(tmp_path, 2)
    with caplog.at_level(logging.WARNING):
        chosen = ckpt.recover_if_possible()
    assert chosen.path == old.path
    for k, v in model.state_dict().items():
        assert torch.equal(v, old_state[k]), k
    assert f"Skipping checkpoint {new.path}" in caplog.text
    # Saving and pruning old checkpoints leaves the damaged one alone.
    ckpt.save_and_keep_only(num_to_keep=1)
    assert new.path.exists() and files_of(new.path) == before
    assert not old.path.exists()  # the user asked for that (num_to_keep)


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: truncate(c / "model.ckpt"),
        lambda c: (c / "model.ckpt").write_bytes(b""),
        # Passes every check, fails when read: the next one loads.
        lambda c: (c / "model.ckpt").write_bytes(b"not a checkpoint"),
    ],
)
def test_stock_checkpoints_are_checked_too(tmp_path, caplog, damage):
    """Written by SpeechBrain's own Checkpointer (no completion record): a
    run trained before pruning was added."""
    old, old_state, new = two_checkpoints(tmp_path, stock=True)
    damage(new.path)
    ckpt, model = checkpointer(tmp_path, 2)
    with caplog.at_level(logging.WARNING):
        chosen = ckpt.recover_if_possible()
    assert chosen.path == old.path
    for k, v in model.state_dict().items():
        assert torch.equal(v, old_state[k]), k
    assert str(new.path) in caplog.text
    assert new.path.exists()


def test_by_metric_skips_damaged_and_misfits_still_raise(tmp_path):
    ckpt, model = checkpointer(tmp_path, 1)
    good = ckpt.save_checkpoint(meta={"loss": 2.0})
    bad = ckpt.save_checkpoint(meta={"loss": 1.0})
    truncate(bad.path / "model.ckpt")
    fresh, _ = checkpointer(tmp_path, 2)
    assert fresh.find_checkpoint(min_key="loss").path == good.path
    # A checkpoint of another model is a real error, not a damaged file.
    shutil.rmtree(bad.path)
    other = PruningCheckpointer(
        tmp_path,
        {"model": torch.nn.Linear(3, 5)},
        pruner=Pruner("magnitude", target=0.3),
    )
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.recover_if_possible()


def test_nothing_readable_starts_fresh(tmp_path, caplog):
    old, _, new = two_checkpoints(tmp_path)
    for c in (old, new):
        (c.path / COMPLETE_FILE).unlink()
    ckpt, model = checkpointer(tmp_path, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        assert ckpt.recover_if_possible() is None
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert caplog.text.count("Skipping checkpoint") == 2
