"""Finiteness checks: a NaN or infinite loss, gradient or score stops a stage.

Authors
 * speechbrain-prune team 2026
"""

import torch


class ScoreError(RuntimeError):
    """A score is NaN or infinite; the stage stops instead of guessing."""


def check_finite(scores, where):
    """Raises :class:`ScoreError` naming the first group with NaN/inf.

    Arguments
    ---------
    scores : dict
        ``group id -> tensor``.
    where : str
        Where the scores come from (``"batch 3"``), for the message.

    Example
    -------
    >>> check_finite({"a": torch.tensor([1.0, float("nan")])}, "batch 3")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_prune.scorers.checks.ScoreError: Group a: score of channel 1 \
is nan at batch 3; ...
    """
    for gid, s in scores.items():
        bad = ~torch.isfinite(s)
        if bad.any():
            i = int(torch.nonzero(bad)[0])
            raise ScoreError(
                f"Group {gid}: score of channel {i} is {s[i].item()} at "
                f"{where}; the stage stops (check the learning rate, the "
                "data of that batch, or score with more stable options)"
            )


def check_grads(grads, slices_by_group, index):
    """Raises :class:`ScoreError` naming the group of a non-finite gradient.

    Example
    -------
    >>> w = torch.nn.Parameter(torch.ones(2, 2))
    >>> grads = {id(w): torch.tensor([[1.0, float("inf")], [0.0, 0.0]])}
    >>> check_grads(grads, {"g": [(w, 0, torch.tensor([[0], [1]]))]}, 5)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_prune.scorers.checks.ScoreError: Group g: the gradient ...
    """
    for gid, slices in slices_by_group.items():
        for p, _, _ in slices:
            g = grads.get(id(p))
            if g is not None and not torch.isfinite(g).all():
                raise ScoreError(
                    f"Group {gid}: the gradient of a coupled parameter "
                    f"{tuple(p.shape)} is not finite at batch {index}; the "
                    "stage stops (check that batch and the learning rate)"
                )


def check_loss(loss, index):
    """Raises :class:`ScoreError` when the loss of batch ``index`` is bad.

    Example
    -------
    >>> check_loss(torch.tensor(1.5), 0)
    >>> check_loss(torch.tensor(float("inf")), 7)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_prune.scorers.checks.ScoreError: The loss is inf at batch 7 ...
    """
    if not torch.is_tensor(loss) or loss.dim() != 0:
        raise TypeError(
            "loss_fn must return a scalar tensor, got "
            f"{type(loss).__name__} {getattr(loss, 'shape', '')}"
        )
    if not torch.isfinite(loss):
        raise ScoreError(
            f"The loss is {loss.item()} at batch {index} (all groups); the "
            "stage stops (check that batch and the model)"
        )
