"""ONNX export of a recogniser with dynamic batch and time axes.

Which exporter, and why (measured with torch 2.14.1, onnxscript 0.7.2,
onnxruntime 1.32.0 on a small CRDNN, input (2, 40, 20), then run at other
lengths):

- ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` underneath)
  with a dynamic time axis fails for every CRDNN: for LSTM and GRU its
  decomposition step stops on ``aten.lstm`` / ``aten.gru`` ("stack expects
  each tensor to be equal size ... Min((s27//2), (s27//40))", "The size of
  tensor a (7) must match the size of tensor b (21)"; pytorch #126339,
  #115092); for LiGRU the graph is written but ONNX Runtime refuses to
  load it (a ``Squeeze`` of the unrolled loop: "Dimension of input 1 must
  be 1 instead of 6").
- The TorchScript-based exporter (``dynamo=False``) writes LSTM and GRU as
  ONNX ``LSTM``/``GRU`` nodes that take any length, and is exact (error
  ~5e-7). It unrolls LiGRU's Python loop over time, though (the graph
  then fails on other lengths), unless the loop is scripted:
  :func:`~speechbrain_prune.deploy.ligru.scan_ligru` swaps the layers for
  a scripted loop, written as an ONNX ``Loop``.

So this module uses the TorchScript-based exporter (opset 17) on a copy of
the model whose LiGRU layers are scanned.

Authors
 * speechbrain-prune team 2026
"""

import contextlib
import warnings

import torch

from speechbrain_prune.deploy.ligru import scan_ligru
from speechbrain_prune.deploy.recognizer import DeployError

OPSET = 17
INPUT, OUTPUT = "feats", "log_probs"


@contextlib.contextmanager
def _quiet():
    """Tracer and deprecation warnings of the exporter, silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_onnx(module, path, n_feats, frames=64, batch=2):
    """Writes ``module`` (features -> log-probs) to ``path`` as ONNX.

    Arguments
    ---------
    module : torch.nn.Module
        E.g. a :class:`~speechbrain_prune.deploy.CTCRecognizer`; input
        ``(batch, time, n_feats)``.
    path : str
        The ``.onnx`` file to write.
    n_feats : int
        Features per frame.
    frames, batch : int
        Shape of the example input (any other works at run time).

    Returns
    -------
    str
        ``path``. The graph's input is ``feats`` (batch, time, n_feats),
        its output ``log_probs`` (batch, time', vocabulary).

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain.nnet.RNN import LiGRU
    >>> from speechbrain.nnet.containers import Sequential
    >>> net = Sequential(LiGRU(4, input_shape=(1, 5, 3))).eval()
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> _ = export_onnx(net, path, n_feats=3)
    >>> x = torch.rand(3, 17, 3)  # another batch size and length
    >>> out = onnx_session(path).run(None, {"feats": x.numpy()})[0]
    >>> out.shape, bool(abs(out - net(x).detach().numpy()).max() < 1e-5)
    ((3, 17, 4), True)
    """
    if frames < 2:
        raise DeployError("export_onnx: frames must be >= 2")
    module, _ = scan_ligru(module)
    x = torch.rand(batch, frames, n_feats)
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            module,
            (x,),
            path,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={
                INPUT: {0: "batch", 1: "time"},
                OUTPUT: {0: "batch", 1: "frames"},
            },
        )
    return path


def onnx_session(path, threads=None, spinning=True):
    """An ONNX Runtime CPU session of ``path`` (``threads``: intra-op).

    ``spinning=False``: idle worker threads sleep instead of spinning (ONNX
    Runtime's default keeps them busy after a run, which takes CPU from
    whatever runs next in the process, e.g. a PyTorch model being timed
    side by side).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(
        path, sess_options=opts, providers=["CPUExecutionProvider"]
    )


def onnx_error(path, module, inputs):
    """Largest absolute difference between ONNX Runtime and PyTorch.

    ``inputs``: feature tensors (batch, time, n_feats) of any shapes.

    Example
    -------
    >>> import os, tempfile
    >>> lin = torch.nn.Linear(3, 2).eval()
    >>> path = export_onnx(lin, os.path.join(tempfile.mkdtemp(), "l.onnx"), 3)
    >>> onnx_error(path, lin, [torch.rand(1, 5, 3)]) < 1e-6
    True
    """
    sess = onnx_session(path)
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = module(x)
        out = sess.run(None, {INPUT: x.numpy()})[0]
        if tuple(out.shape) != tuple(ref.shape):
            raise DeployError(
                f"{path}: output shape {out.shape} for input "
                f"{tuple(x.shape)}, PyTorch gives {tuple(ref.shape)}"
            )
        worst = max(worst, float(abs(out - ref.numpy()).max()))
    return worst
