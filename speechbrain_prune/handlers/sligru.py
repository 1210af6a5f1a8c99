"""SpeechBrain ``SLiGRU``: a LiGRU with a LayerNorm on the recurrent path.

Unit ``j`` of an ``SLiGRU_Layer`` owns what it owns in a ``LiGRU_Layer``
(see :mod:`speechbrain_prune.handlers.ligru`, whose handler this one
extends) and, in addition, entries ``j`` and ``H + j`` of the recurrent
``layer_norm`` over ``2H``.

The recurrent ``layer_norm`` normalises all ``2H`` gate pre-activations
jointly at every step, so a removed unit would still move the statistics
of the kept ones: the masked reference computes them over kept entries
only. Layers may end with different widths: the module's class is then
switched to :class:`NonUniformSLiGRU`, which only changes how the last
states are returned.

Costs and scoring need nothing here: its ``Linear`` layers and norms are
counted by torch's layer types (``w`` once on the input and its
time-flipped copy, ``u`` and ``layer_norm`` at every step of each
direction), and its layers run one after the other, so the activation
scorer hooks ``rnn[k]`` directly.

Authors
 * speechbrain-prune team 2026
"""

from typing import Optional

import torch
from speechbrain.nnet.RNN import SLiGRU

from speechbrain_prune.handlers.base import register_handler
from speechbrain_prune.handlers.ligru import (
    LiGRUHandler,
    last_states,
    same_widths,
)


class NonUniformSLiGRU(SLiGRU):
    """``SLiGRU`` whose layers may have different widths after pruning.

    SpeechBrain's ``SLiGRU`` stacks the last state of every layer into one
    tensor, which needs one width. This subclass returns that state as a
    list (see :func:`~speechbrain_prune.handlers.ligru.last_states`) when
    the widths differ; everything else, parameter names included, is
    ``SLiGRU``'s own, so checkpoints load unchanged.

    Example
    -------
    >>> net = SLiGRU(4, input_shape=(2, 5, 3), num_layers=2)
    >>> net.__class__ = NonUniformSLiGRU
    >>> out, h = net(torch.rand(2, 5, 3))
    >>> out.shape
    torch.Size([2, 5, 4])
    """

    def _forward_sligru(self, x, hx: Optional[torch.Tensor]):
        if same_widths(self.rnn):
            return super()._forward_sligru(x, hx)
        return last_states(self.rnn, x, hx)


@register_handler(SLiGRU)
class SLiGRUHandler(LiGRUHandler):
    """``LiGRU``'s handler; the recurrent ``layer_norm`` is one more norm.

    Example
    -------
    >>> from speechbrain_prune.graph import discover_groups
    >>> from speechbrain_prune.surgery import apply_removals
    >>> import speechbrain as sb
    >>> rnn = SLiGRU(8, input_shape=(1, 5, 4), num_layers=2,
    ...              bidirectional=True).eval()
    >>> model = sb.nnet.containers.Sequential(
    ...     rnn, sb.nnet.linear.Linear(n_neurons=3, input_size=16))
    >>> groups = discover_groups(model, torch.rand(1, 5, 4))
    >>> _ = apply_removals(model, groups, {"0.layer0": [1, 2, 3]})
    >>> rnn.rnn[0].layer_norm.normalized_shape, rnn.rnn[1].w.weight.shape
    ((10,), torch.Size([16, 10]))
    >>> type(rnn).__name__, model(torch.rand(1, 5, 4)).shape
    ('NonUniformSLiGRU', torch.Size([1, 5, 3]))
    """

    uniform_type = SLiGRU
    non_uniform_type = NonUniformSLiGRU

    def norms(self, layer):
        """The feed-forward norm and the recurrent ``layer_norm``."""
        return (layer.norm, layer.layer_norm)
