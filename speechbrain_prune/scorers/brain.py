"""The SpeechBrain adapter: a recipe's ``Brain`` as a scorer's ``loss_fn``.

Authors
 * speechbrain-prune team 2026
"""

import speechbrain as sb


def brain_loss_fn(brain, stage=sb.Stage.TRAIN):
    """``loss_fn(batch)`` through a Brain's own forward and objectives.

    Arguments
    ---------
    brain : speechbrain.Brain
        The recipe's Brain; its ``compute_forward`` and
        ``compute_objectives`` define the loss (CTC, attention + CTC, ...).
    stage : speechbrain.Stage
        Stage passed to both (``TRAIN`` by default).

    Returns
    -------
    callable

    Example
    -------
    >>> import torch
    >>> class MyBrain(sb.Brain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.lin(batch)
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return predictions.pow(2).mean()
    >>> brain = MyBrain(modules={"lin": torch.nn.Linear(3, 1)},
    ...                 run_opts={"device": "cpu"})
    >>> loss_fn = brain_loss_fn(brain)
    >>> loss_fn(torch.rand(4, 3)).dim()
    0
    """

    def loss_fn(batch):
        predictions = brain.compute_forward(batch, stage)
        return brain.compute_objectives(predictions, batch, stage)

    return loss_fn
