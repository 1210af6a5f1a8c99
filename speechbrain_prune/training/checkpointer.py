"""A ``Checkpointer`` that carries the pruning plan: the YAML-only way in.

Authors
 * speechbrain-prune team 2026
"""

import logging

from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_prune.training.pruner import PRUNING_STEPS, put_first

logger = logging.getLogger(__name__)


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
        super().__init__(checkpoints_dir, recoverables, **kwargs)
        put_first(self, "pruner", pruner)

    def add_recoverable(self, name, obj, *args, **kwargs):
        """Registers a recoverable; the Brain is handed to the pruner."""
        super().add_recoverable(name, obj, *args, **kwargs)
        if name == "brain":
            self.pruner.attach(obj, self)

    def save_checkpoint(self, meta=None, *args, **kwargs):
        """Saves, recording the number of pruning steps in the metadata."""
        meta = dict(meta or {})
        meta[PRUNING_STEPS] = len(self.pruner.plan)
        return super().save_checkpoint(meta, *args, **kwargs)

    def delete_checkpoints(self, *args, ckpt_predicate=None, **kwargs):
        """Deletes only among checkpoints of the live structure."""
        live = len(self.pruner.plan)

        def predicate(ckpt):
            same = ckpt.meta.get(PRUNING_STEPS, 0) == live
            return same and (ckpt_predicate is None or ckpt_predicate(ckpt))

        return super().delete_checkpoints(
            *args, ckpt_predicate=predicate, **kwargs
        )

    def find_checkpoint(
        self,
        importance_key=None,
        max_key=None,
        min_key=None,
        ckpt_predicate=None,
    ):
        """Resume: newest loadable. By metric: best of the final structure."""
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

        return super().find_checkpoint(
            importance_key, max_key, min_key, predicate
        )
