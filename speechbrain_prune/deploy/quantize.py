"""int8 dynamic quantization of a (pruned) recogniser: PyTorch and ONNX.

PyTorch: ``torch.ao.quantization.quantize_dynamic`` turns ``Linear``,
``LSTM`` and ``GRU`` layers into int8-weight modules (activations are
quantized on the fly; convolutions, norms and LiGRU's loop stay float,
LiGRU's two ``Linear`` layers become int8). SpeechBrain's ``LSTM``/``GRU``
wrappers call ``self.rnn.flatten_parameters()`` in every forward, and
torch's dynamically quantized RNNs have no such method. Instead of
patching SpeechBrain, the quantization mapping builds
:class:`QuantizedLSTM` / :class:`QuantizedGRU`: torch's quantized modules
with a ``flatten_parameters`` that has nothing to do (packed int8 weights
are not cuDNN buffers). Surgery's ``StackedRNN`` forwards the call to its
one-layer RNNs, which are quantized the same way.

ONNX: ``onnxruntime.quantization.quantize_dynamic`` with int8 weights on
``MatMul`` (Linear layers) and ``LSTM`` nodes; ONNX Runtime has no int8
GRU, and the MatMul inside LiGRU's ``Loop`` body is left in float by the
quantizer. Convolutions are left in float by default (``ConvInteger`` is
slower than float convolution on the CPUs measured here; see
BENCHMARKS.md).

Authors
 * speechbrain-prune team 2026
"""

import io
import logging
import os

import torch
import torch.ao.nn.quantized.dynamic as nnqd


class QuantizedLSTM(nnqd.LSTM):
    """torch's dynamically quantized LSTM, callable by SpeechBrain's LSTM.

    Example
    -------
    >>> import speechbrain as sb
    >>> rnn = sb.nnet.RNN.LSTM(5, input_shape=(1, 4, 3)).eval()
    >>> q = quantize_torch(rnn)
    >>> type(q.rnn).__name__, q(torch.rand(2, 4, 3))[0].shape
    ('QuantizedLSTM', torch.Size([2, 4, 5]))
    """

    def flatten_parameters(self):
        """Nothing to compact: the weights are packed int8 tensors."""

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """torch's conversion, then this class."""
        qmod = nnqd.LSTM.from_float(mod, use_precomputed_fake_quant)
        qmod.__class__ = cls
        return qmod


class QuantizedGRU(nnqd.GRU):
    """torch's dynamically quantized GRU, callable by SpeechBrain's GRU.

    Example
    -------
    >>> import speechbrain as sb
    >>> rnn = sb.nnet.RNN.GRU(5, input_shape=(1, 4, 3)).eval()
    >>> quantize_torch(rnn)(torch.rand(2, 4, 3))[0].shape
    torch.Size([2, 4, 5])
    """

    def flatten_parameters(self):
        """Nothing to compact: the weights are packed int8 tensors."""

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """torch's conversion, then this class."""
        qmod = nnqd.GRU.from_float(mod, use_precomputed_fake_quant)
        qmod.__class__ = cls
        return qmod


MAPPING = {
    torch.nn.Linear: nnqd.Linear,
    torch.nn.LSTM: QuantizedLSTM,
    torch.nn.GRU: QuantizedGRU,
}


def quantize_torch(module):
    """An int8 copy of ``module`` (Linear, LSTM, GRU layers), eval mode.

    ``module`` is left as it is. As torch's ``quantize_dynamic``, only
    submodules are converted (not ``module`` itself).

    Example
    -------
    >>> lin = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    >>> q = quantize_torch(lin)
    >>> type(q[0]).__name__, type(lin[0]).__name__
    ('Linear', 'Linear')
    >>> q[0].__module__
    'torch.ao.nn.quantized.dynamic.modules.linear'
    """
    was = module.training
    module.eval()
    try:
        return torch.ao.quantization.quantize_dynamic(
            module,
            set(MAPPING),
            dtype=torch.qint8,
            mapping=MAPPING,
            inplace=False,
        ).eval()
    finally:
        module.train(was)


def quantize_onnx(src, dst, op_types=("MatMul", "LSTM")):
    """Writes ``dst``: ``src`` with int8 weights (dynamic quantization).

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain_prune.deploy.onnx_export import (
    ...     export_onnx, onnx_error)
    >>> lin = torch.nn.Linear(64, 64).eval()
    >>> d = tempfile.mkdtemp()
    >>> src = export_onnx(lin, os.path.join(d, "l.onnx"), 64)
    >>> dst = quantize_onnx(src, os.path.join(d, "l.int8.onnx"))
    >>> os.path.getsize(dst) < os.path.getsize(src) / 2
    True
    >>> 0 < onnx_error(dst, lin, [torch.rand(2, 5, 64)]) < 0.05
    True
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its shape inference warns per tensor
    try:
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=list(op_types),
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
    return dst


def torch_size(module):
    """Bytes of ``module``'s saved ``state_dict`` (int8 weights packed).

    Example
    -------
    >>> lin = torch.nn.Sequential(torch.nn.Linear(256, 256)).eval()
    >>> torch_size(quantize_torch(lin)) < torch_size(lin) / 3
    True
    """
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def file_size(path):
    """Bytes of a file (ONNX weights are inside the file)."""
    return os.path.getsize(path)
