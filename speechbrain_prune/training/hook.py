"""The YAML route's one hook: a Brain instance's epoch and batch calls.

A recipe whose ``train.py`` is SpeechBrain's own cannot subclass anything,
so the pruner reaches the training loop through the Brain *instance*: its
``_fit_train`` (start of each training epoch) and ``fit_batch`` (each
training step) are wrapped to call the pruner first. Nothing of
SpeechBrain's classes is changed, the wrapping is idempotent, and
:meth:`InstanceHook.detach` puts the originals back. A
:class:`~speechbrain_prune.training.PruningBrain` needs no such hook: it
overrides the same two methods.

Authors
 * speechbrain-prune team 2026
"""

_METHODS = ("_fit_train", "fit_batch")


class InstanceHook:
    """Wraps ``brain``'s ``_fit_train`` and ``fit_batch`` for ``pruner``.

    Arguments
    ---------
    brain : speechbrain.Brain
    pruner : Pruner
        Its ``on_epoch_start(train_set, epoch)``, ``on_epoch_end()`` and
        ``on_batch_start()`` are called around the Brain's own methods.

    Example
    -------
    >>> class Brain:
    ...     def _fit_train(self, train_set, epoch, enable):
    ...         return "trained"
    ...     def fit_batch(self, batch):
    ...         return 0.0
    >>> class Recorder:
    ...     calls = []
    ...     def on_epoch_start(self, train_set, epoch):
    ...         self.calls.append(("start", epoch))
    ...     def on_epoch_end(self):
    ...         self.calls.append("end")
    ...     def on_batch_start(self):
    ...         self.calls.append("batch")
    >>> brain, pruner = Brain(), Recorder()
    >>> hook = InstanceHook(brain, pruner)
    >>> brain._fit_train([], 3, True), brain.fit_batch(None), pruner.calls
    ('trained', 0.0, [('start', 3), 'end', 'batch'])
    >>> hook.detach()
    >>> "_fit_train" in vars(brain), brain._fit_train([], 4, True)
    (False, 'trained')
    """

    def __init__(self, brain, pruner):
        self.brain = brain
        self.saved = {name: vars(brain).get(name) for name in _METHODS}
        fit_train = brain._fit_train
        fit_batch = brain.fit_batch

        def _fit_train(train_set, epoch, enable):
            pruner.on_epoch_start(train_set, epoch)
            result = fit_train(train_set, epoch, enable)
            pruner.on_epoch_end()
            return result

        def _fit_batch(batch):
            pruner.on_batch_start()
            return fit_batch(batch)

        brain._fit_train = _fit_train
        brain.fit_batch = _fit_batch
        self.attached = True

    def detach(self):
        """Puts the Brain's own methods back (idempotent)."""
        if not self.attached:
            return
        for name, value in self.saved.items():
            if value is None:
                vars(self.brain).pop(name, None)
            else:
                setattr(self.brain, name, value)
        self.attached = False
