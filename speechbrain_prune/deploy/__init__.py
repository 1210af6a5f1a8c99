"""Deployment of a pruned CRDNN + CTC recogniser without training machinery.

One job per file:

- :mod:`~speechbrain_prune.deploy.recognizer`: the module that is exported
  (features in, CTC log-probabilities out; normalisation inside);
- :mod:`~speechbrain_prune.deploy.ligru`: an export-time substitute of
  SpeechBrain's ``LiGRU_Layer`` whose time loop survives ONNX export;
- :mod:`~speechbrain_prune.deploy.onnx_export`: ONNX export with dynamic
  batch and time axes, checked against PyTorch in ONNX Runtime;
- :mod:`~speechbrain_prune.deploy.quantize`: int8 dynamic quantization in
  PyTorch and in ONNX Runtime;
- :mod:`~speechbrain_prune.deploy.program`: ``torch.export`` (what works,
  what does not and why);
- :mod:`~speechbrain_prune.deploy.folder`: ``speechbrain-prune deploy``,
  the ONNX files written into an exported folder;
- :mod:`~speechbrain_prune.deploy.transcribe`: a plugin-free example that
  transcribes a file with ONNX Runtime and greedy CTC decoding (copied into
  the folder).

Authors
 * speechbrain-prune team 2026
"""

from speechbrain_prune.deploy.recognizer import (
    CTCRecognizer,
    DeployError,
    GlobalNorm,
)

__all__ = ["CTCRecognizer", "DeployError", "GlobalNorm"]
