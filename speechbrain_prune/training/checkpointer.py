"""A ``Checkpointer`` that carries the pruning plan: the YAML-only way in.

Authors
 * speechbrain-prune team 2026
"""

import json
import logging
import os
import pickle
import zipfile

import yaml
from speechbrain.utils.checkpoints import (
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_prune.training.pruner import PRUNING_STEPS, put_first

logger = logging.getLogger(__name__)

#: Written last into a checkpoint folder: the size of every file in it.
COMPLETE_FILE = "CKPT.complete"
#: Meta key (written first, in CKPT.yaml) that promises ``COMPLETE_FILE``.
COMPLETE_KEY = "complete_file"


class UnreadableCheckpoint(RuntimeError):
    """A checkpoint whose files cannot be read (interrupted or damaged)."""


class PruningCheckpointer(Checkpointer):
    """SpeechBrain's ``Checkpointer`` plus a ``Pruner``.

    A stock recipe gains pruning stages by changing its checkpointer's
    class to this one and giving it the pruner (``pruner: !ref <pruner>``).
    SpeechBrain registers the Brain as a recoverable of the checkpointer
    when the Brain is built; this class hands it to the pruner then, which
    checks the set-up and hooks the start of every training epoch. The
    pruner is the first recoverable, so a checkpoint's plan resizes the
    model before its weights load.

    Which checkpoint loads:

    - resuming (``fit`` -> ``recover_if_possible()`` without a key): the
      most recent checkpoint, whatever its structure; the live model is
      pruned to it;
    - choosing by a metric (``evaluate(min_key="PER")``): the best
      checkpoint *among those of the most pruned structure*; checkpoints of
      earlier, less pruned stages are never chosen (their shapes differ).
      They are also never deleted by ``save_and_keep_only``, which keeps its
      ``num_to_keep`` per key within the current structure.

    Checkpoints interrupted while being written or deleted (a ``SIGKILL``,
    a full disk) are skipped with a warning and the newest good one loads:
    SpeechBrain writes ``CKPT.yaml`` first and then one file per
    recoverable, so a killed save leaves a folder that looks like a
    checkpoint. This class writes ``CKPT.complete`` last (the size of every
    file; ``CKPT.yaml`` promises it), and a folder whose files do not match
    it is incomplete. Checkpoints written without it (SpeechBrain's stock
    ``Checkpointer``) are skipped when ``CKPT.yaml`` is empty or a file is
    empty or a truncated zip archive (``torch.save``'s format). Skipped
    folders are never deleted: move them away when you like.

    Arguments
    ---------
    checkpoints_dir : str
    recoverables : dict, optional
    pruner : Pruner
        The run's pruner.
    **kwargs
        Other ``Checkpointer`` arguments.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain_prune.training import Pruner
    >>> ckpt = PruningCheckpointer(tempfile.mkdtemp(),
    ...     {"model": torch.nn.Linear(2, 2)},
    ...     pruner=Pruner("magnitude", target=0.3))
    >>> list(ckpt.recoverables)
    ['pruner', 'model']
    """

    def __init__(
        self, checkpoints_dir, recoverables=None, pruner=None, **kwargs
    ):
        if pruner is None:
            raise ValueError(
                "PruningCheckpointer needs the run's pruner: add "
                "`pruner: !ref <pruner>` to the checkpointer in the YAML"
            )
        self.pruner = pruner
        self._verdicts = {}  # folder -> (its state, verdict, warned)
        super().__init__(checkpoints_dir, recoverables, **kwargs)
        put_first(self, "pruner", pruner)

    def add_recoverable(self, name, obj, *args, **kwargs):
        """Registers a recoverable; the Brain is handed to the pruner."""
        super().add_recoverable(name, obj, *args, **kwargs)
        if name == "brain":
            self.pruner.attach(obj, self)

    def save_checkpoint(self, meta=None, *args, **kwargs):
        """Saves; records the plan's length; marks the folder complete."""
        meta = dict(meta or {})
        meta[PRUNING_STEPS] = len(self.pruner.plan)
        meta[COMPLETE_KEY] = COMPLETE_FILE
        ckpt = super().save_checkpoint(meta, *args, **kwargs)
        if ckpt is not None:  # the main process: it wrote the folder
            mark_complete(ckpt.path)
        # Every rank waits until the folder is complete: a rank listing the
        # checkpoints before (save_and_keep_only deletes right after saving)
        # would skip the newest as incomplete, choose other deletions than
        # the main process and hang in SpeechBrain's main-only deletion.
        ddp_barrier()
        return ckpt

    def delete_checkpoints(self, *args, ckpt_predicate=None, **kwargs):
        """Deletes only among checkpoints of the live structure."""
        live = len(self.pruner.plan)

        def predicate(ckpt):
            same = ckpt.meta.get(PRUNING_STEPS, 0) == live
            return same and (ckpt_predicate is None or ckpt_predicate(ckpt))

        return super().delete_checkpoints(
            *args, ckpt_predicate=predicate, **kwargs
        )

    def list_checkpoints(self):
        """Readable checkpoints; the others are skipped with a warning."""
        good = []
        for path in self._list_checkpoint_dirs():
            key = folder_state(path)
            if key is None:  # deleted meanwhile
                continue
            if self._verdicts.get(path, (None,))[0] != key:
                self._verdicts[path] = (key, read_checkpoint(path), False)
            key, (ckpt, problem), warned = self._verdicts[path]
            if problem is None:  # a copy: callers may edit the meta
                good.append(
                    Checkpoint(ckpt.path, dict(ckpt.meta), ckpt.paramfiles)
                )
            elif not warned and if_main_process():
                # (Other ranks may list while the main process still
                # writes a checkpoint; they skip it quietly.)
                logger.warning(
                    f"Skipping checkpoint {path}: {problem}. The newest "
                    "readable checkpoint is used; this folder is kept (move "
                    "it away to silence this warning)."
                )
                self._verdicts[path] = (key, (ckpt, problem), True)
        return good

    def find_checkpoint(
        self,
        importance_key=None,
        max_key=None,
        min_key=None,
        ckpt_predicate=None,
    ):
        """Resume: newest loadable. By metric: best of the final structure."""
        return super().find_checkpoint(
            importance_key,
            max_key,
            min_key,
            self._predicate(importance_key, max_key, min_key, ckpt_predicate),
        )

    def recover_if_possible(
        self,
        importance_key=None,
        max_key=None,
        min_key=None,
        ckpt_predicate=None,
    ):
        """Loads the checkpoint ``find_checkpoint`` picks, or the next one.

        A checkpoint whose files turn out unreadable while loading is
        skipped (warning) for the next in the same order, as long as
        nothing was pruned while trying it; else the error says which
        folder to move away.
        """
        ranked = self.find_checkpoints(
            importance_key,
            max_key,
            min_key,
            self._predicate(importance_key, max_key, min_key, ckpt_predicate),
            max_num_checkpoints=None,
        )
        for ckpt in ranked:
            steps = len(self.pruner.plan)
            try:
                self.load_checkpoint(ckpt)
                return ckpt
            except UnreadableCheckpoint as error:
                if len(self.pruner.plan) != steps:
                    raise
                logger.warning(f"{error}; trying the next checkpoint")
        logger.info("Would load a checkpoint here, but none found yet.")
        return None

    def load_checkpoint(self, checkpoint):
        """Loads ``checkpoint``; unreadable files: ``UnreadableCheckpoint``."""
        try:
            super().load_checkpoint(checkpoint)
        except Exception as error:
            if not _unreadable(error):
                raise
            raise UnreadableCheckpoint(
                f"Checkpoint {checkpoint.path} could not be read "
                f"({type(error).__name__}: {error}); it is kept: move it "
                "out of the save folder to resume from an older one"
            ) from error

    def _predicate(self, importance_key, max_key, min_key, ckpt_predicate):
        """Loadable structures; by metric, the final structure only."""
        live = len(self.pruner.plan)
        ckpts = self.list_checkpoints()
        loadable = [c for c in ckpts if c.meta.get(PRUNING_STEPS, 0) >= live]
        by_metric = any(
            k is not None for k in (importance_key, max_key, min_key)
        )
        if by_metric and loadable:
            final = max(c.meta.get(PRUNING_STEPS, 0) for c in loadable)
            skipped = sum(c.meta.get(PRUNING_STEPS, 0) != final for c in ckpts)
            if skipped:
                logger.info(
                    f"Choosing among checkpoints of the final pruned structure "
                    f"({final} steps); {skipped} of earlier stages skipped"
                )
            allowed = {
                c.path
                for c in loadable
                if c.meta.get(PRUNING_STEPS, 0) == final
            }
        else:
            allowed = {c.path for c in loadable}

        def predicate(ckpt):
            ok = ckpt.path in allowed
            return ok and (ckpt_predicate is None or ckpt_predicate(ckpt))

        return predicate


def mark_complete(folder):
    """Writes ``CKPT.complete`` into ``folder``: the size of each file.

    Written last and atomically (a temporary file renamed), so a folder
    whose files all match it was written in full.

    Example
    -------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "model.ckpt").write_bytes(b"1234")
    >>> _ = (folder / METAFNAME).write_text("unixtime: 1")
    >>> mark_complete(folder)
    >>> json.loads((folder / COMPLETE_FILE).read_text())
    {'files': {'model.ckpt': 4}}
    """
    sizes = {
        f.name: f.stat().st_size
        for f in sorted(folder.iterdir())
        if f.is_file()
        and f.name != METAFNAME
        and not f.name.startswith(COMPLETE_FILE)
    }
    tmp = folder / (COMPLETE_FILE + ".tmp")
    tmp.write_text(json.dumps({"files": sizes}))
    os.replace(tmp, folder / COMPLETE_FILE)


def folder_state(folder):
    """Names, sizes and times of a folder's files: a cache key."""
    try:
        return tuple(
            sorted(
                (f.name, st.st_size, st.st_mtime_ns)
                for f in folder.iterdir()
                for st in [f.stat()]
            )
        )
    except OSError:  # deleted meanwhile
        return None


def read_checkpoint(folder):
    """``(Checkpoint, None)`` if ``folder`` is readable, else ``(None, why)``.

    Example
    -------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "CKPT+x"
    >>> folder.mkdir()
    >>> _ = (folder / METAFNAME).write_text("")
    >>> read_checkpoint(folder)
    (None, 'CKPT.yaml is empty or not a mapping')
    """
    try:
        with open(folder / METAFNAME, encoding="utf-8") as f:
            meta = yaml.load(f, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError) as error:
        return None, f"{METAFNAME} is unreadable ({error})"
    if not isinstance(meta, dict):
        return None, f"{METAFNAME} is empty or not a mapping"
    missing = {"unixtime", "end-of-epoch"} - set(meta)
    if missing:
        return None, f"{METAFNAME} lacks {sorted(missing)}"
    files = {f.name: f for f in folder.iterdir() if f.is_file()}
    if meta.get(COMPLETE_KEY):
        problem = _incomplete(folder, files)
    else:  # written by SpeechBrain's stock Checkpointer: check what we can
        problem = _damaged(files)
    if problem:
        return None, problem
    paramfiles = {
        f.stem: f for f in files.values() if f.suffix == PARAMFILE_EXT
    }
    return Checkpoint(folder, meta, paramfiles), None


def _incomplete(folder, files):
    marker = files.get(COMPLETE_FILE)
    if marker is None:
        return (
            f"{COMPLETE_FILE} is missing: the save (or a deletion) was "
            "interrupted"
        )
    try:
        sizes = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{COMPLETE_FILE} is unreadable"
    for name, size in sizes.items():
        if name not in files:
            return f"{name} is missing (a deletion was interrupted)"
        if files[name].stat().st_size != size:
            return (
                f"{name} has {files[name].stat().st_size} bytes, "
                f"{size} were written"
            )
    return None


def _damaged(files):
    for name, f in sorted(files.items()):
        if f.suffix != PARAMFILE_EXT:
            continue
        if f.stat().st_size == 0:
            return f"{name} is empty"
        with open(f, "rb") as fh:
            is_zip = fh.read(2) == b"PK"
        if is_zip and not zipfile.is_zipfile(f):
            return f"{name} is truncated (not a whole zip archive)"
    return None


def _unreadable(error):
    """Whether ``error`` says a file is unreadable, not that it misfits."""
    if isinstance(
        error,
        (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError),
    ):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "PytorchStreamReader" in text or "zip archive" in text
    )
