"""A pruner that never reached its Brain: an error at the first training step.

A recipe gains pruning with two YAML edits: the ``pruner`` and the
checkpointer's class. With the first edit only (the checkpointer still
SpeechBrain's ``Checkpointer``), nothing hands the Brain to the pruner and
training would run to the end without pruning, silently.

How this is seen without patching SpeechBrain: every ``Pruner`` is watched
from its creation until it is attached. While one is unattached, a global
torch forward pre-hook (``register_module_forward_pre_hook``, public torch
API) looks at each module call in training mode: when the call comes from
``Brain.fit`` / ``Brain._fit_train`` of a Brain whose ``hparams`` hold an
unattached pruner, it raises a clear error there, at the first forward of
the first training batch (before any optimizer step). Other forwards
(inference, a Brain without that pruner, evaluation) are left alone. The
hook is removed as soon as no unattached pruner is alive, so a correctly
edited recipe never pays for it.

Authors
 * speechbrain-prune team 2026
"""

import sys
import weakref

import speechbrain as sb
import torch

_UNATTACHED = weakref.WeakSet()
_HOOK = None

#: The code objects of the training loop whose ``self`` is the Brain.
_TRAINING = (sb.core.Brain.fit.__code__, sb.core.Brain._fit_train.__code__)
#: How far up the stack a module call looks for them (a nested CRDNN's
#: deepest module is about 25 frames below ``_fit_train``).
_DEPTH = 80


class PrunerNotAttached(RuntimeError):
    """A pruner in a Brain's hparams that never reached the Brain."""


def watch(pruner):
    """Watches ``pruner`` until it is attached (``pruner.brain`` is set).

    Example
    -------
    >>> class Stub:
    ...     brain = None
    >>> pruner = Stub()
    >>> watch(pruner)
    >>> pruner in _UNATTACHED
    True
    """
    global _HOOK
    _UNATTACHED.add(pruner)
    if _HOOK is None:
        _HOOK = torch.nn.modules.module.register_module_forward_pre_hook(_check)


def _check(module, args):
    global _HOOK
    if not module.training:  # Brain.fit trains; eval forwards are not it
        return None
    waiting = [p for p in list(_UNATTACHED) if p.brain is None]
    if not waiting:
        _UNATTACHED.clear()
        if _HOOK is not None:
            _HOOK.remove()
            _HOOK = None
        return None
    frame = sys._getframe(1)
    for _ in range(_DEPTH):
        if frame is None or frame.f_code in _TRAINING:
            break
        frame = frame.f_back
    if frame is None or frame.f_code not in _TRAINING:
        return None
    brain = frame.f_locals.get("self")
    hparams = getattr(brain, "hparams", None)
    items = vars(hparams).items() if hasattr(hparams, "__dict__") else ()
    for name, value in items:
        if any(value is p for p in waiting):
            raise PrunerNotAttached(
                f"The pruner `{name}` in the hparams never reached the "
                f"Brain ({type(brain).__name__}), so no pruning stage would "
                "run. The checkpointer hands the Brain to the pruner: "
                "declare it as `!new:speechbrain_prune.PruningCheckpointer` "
                f"with `pruner: !ref <{name}>` (the second half of the YAML "
                "edit; it is "
                f"{type(getattr(brain, 'checkpointer', None)).__name__} "
                "now), or subclass speechbrain_prune.PruningBrain in "
                "train.py. Remove the pruner from the YAML to train "
                "without pruning."
            )
    return None
