"""``torch.export`` of a recogniser: what works and what does not, and why.

Measured with torch 2.14.1 (``strict=False``; tests pin each line):

- a **fixed number of frames** exports for LSTM, GRU and LiGRU CRDNNs and
  the ``ExportedProgram`` equals eager PyTorch at that shape;
- a **dynamic batch** exports for LSTM and GRU; LiGRU specialises it
  (``LiGRU_Layer._change_batch_size`` compares ``self.batch_size`` with
  the input's batch: "You marked b as dynamic but your code specialized it
  to be a constant");
- a **dynamic time axis** fails for all three: ``torch.nn.LSTM``/``GRU``
  alone (no SpeechBrain code involved) specialise the time dimension
  ("You marked t as dynamic but your code specialized it to be a constant
  (40)"), and LiGRU's Python loop over time needs a concrete length
  (pytorch #126339, #115092).

So a ``torch.export`` deployment runs one length per program (pad or cut
utterances to it; with a bidirectional RNN padding changes the result);
ONNX (:mod:`~speechbrain_prune.deploy.onnx_export`) is the format with a
dynamic time axis. :func:`export_program` raises :class:`DeployError`
with torch's own message when a dynamic axis cannot be kept.

Authors
 * speechbrain-prune team 2026
"""

import warnings

import torch

from speechbrain_prune.deploy.recognizer import DeployError


def export_program(
    module, n_feats, frames, batch=2, dynamic_batch=False, dynamic_time=False
):
    """``torch.export.export`` of ``module`` on ``(batch, frames, n_feats)``.

    Arguments
    ---------
    module : torch.nn.Module
        Features (batch, time, n_feats) -> outputs; put in eval mode.
    n_feats, frames, batch : int
        The example input's shape (a batch of 1 would be specialised:
        torch.export treats sizes 0 and 1 as constants).
    dynamic_batch, dynamic_time : bool
        Ask for a dynamic batch / time axis.

    Returns
    -------
    torch.export.ExportedProgram

    Example
    -------
    >>> lstm = torch.nn.LSTM(3, 4, batch_first=True).eval()
    >>> class Out(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rnn = lstm
    ...     def forward(self, x):
    ...         return self.rnn(x)[0]
    >>> prog = export_program(Out(), 3, frames=8, dynamic_batch=True)
    >>> prog.module()(torch.rand(5, 8, 3)).shape
    torch.Size([5, 8, 4])
    >>> export_program(Out(), 3, frames=8, dynamic_time=True)
    Traceback (most recent call last):
    ...
    speechbrain_prune.deploy.recognizer.DeployError: torch.export ...
    """
    from torch.export import Dim

    module.eval()
    x = torch.rand(batch, frames, n_feats)
    dims = {}
    if dynamic_batch:
        dims[0] = Dim("batch", min=1, max=1024)
    if dynamic_time:
        dims[1] = Dim("time", min=2, max=10**6)
    shapes = (dims,) if dims else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(
                module, (x,), dynamic_shapes=shapes, strict=False
            )
    except Exception as e:  # torch raises several types here
        asked = [
            k
            for k, v in (("batch", dynamic_batch), ("time", dynamic_time))
            if v
        ]
        first = str(e).strip().splitlines()
        detail = " ".join(first[:2]) if first else type(e).__name__
        raise DeployError(
            f"torch.export could not keep the {' and '.join(asked) or 'static'}"
            f" axis dynamic for {type(module).__name__}: {detail} (see "
            "speechbrain_prune.deploy.program: RNN time loops specialise "
            "the length; use the ONNX export for a dynamic time axis)"
        ) from e
