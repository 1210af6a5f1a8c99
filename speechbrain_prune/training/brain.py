"""``PruningBrain``: the code way in, for people writing their own train.py.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb


class PruningBrain(sb.Brain):
    """A ``Brain`` with pruning stages (subclass it instead of ``Brain``).

    It overrides the Brain's ``_fit_train`` (the stages due run at the
    start of a training epoch) and ``fit_batch`` (the random state after a
    recovery); a recipe that overrides them too must call ``super()``.

    The pruner comes from the ``pruner`` argument or ``hparams["pruner"]``.
    A checkpointer, if any, must be a :class:`PruningCheckpointer` (it
    records the plan in every checkpoint and chooses which to load).

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.Brain``.
    pruner : Pruner, optional
        Defaults to ``hparams["pruner"]``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_prune.training import Pruner
    >>> class Fit(PruningBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.lin(batch[0])
    ...     def compute_objectives(self, out, batch, stage):
    ...         return torch.nn.functional.mse_loss(out, batch[1])
    >>> brain = Fit({"lin": torch.nn.Linear(4, 4)},
    ...             lambda p: torch.optim.SGD(p, 0.1),
    ...             pruner=Pruner("magnitude", target=0.3))
    >>> brain.pruner.brain is brain
    True
    """

    def __init__(self, *args, pruner=None, **kwargs):
        super().__init__(*args, **kwargs)
        if pruner is None:
            pruner = getattr(self.hparams, "pruner", None)
        if pruner is None:
            raise ValueError(
                "PruningBrain needs a pruner: pass pruner=... or declare "
                "`pruner: !new:speechbrain_prune.Pruner` in the hparams"
            )
        from speechbrain_prune.training.checkpointer import (
            PruningCheckpointer,
        )

        if self.checkpointer is not None and not isinstance(
            self.checkpointer, PruningCheckpointer
        ):
            raise TypeError(
                "PruningBrain checkpoints need the plan: declare the "
                "checkpointer as !new:speechbrain_prune.PruningCheckpointer "
                "with `pruner: !ref <pruner>`"
            )
        self.pruner = pruner
        pruner.attach(self)

    # SpeechBrain's training loop, with the pruner's calls ------------------
    def _fit_train(self, train_set, epoch, enable):
        """Runs the stages due at the start of ``epoch``, then the epoch."""
        self.pruner.on_epoch_start(train_set, epoch)
        result = super()._fit_train(train_set, epoch, enable)
        self.pruner.on_epoch_end()
        return result

    def fit_batch(self, batch):
        """One training step (after a recovery, on the restored RNG)."""
        self.pruner.on_batch_start()
        return super().fit_batch(batch)
