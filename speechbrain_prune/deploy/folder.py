"""``speechbrain-prune deploy``: ONNX files written into an exported folder.

:func:`deploy_folder` loads a CTC folder written by ``speechbrain-prune
export`` with SpeechBrain alone, exports its recogniser (normalisation,
pruned CRDNN, CTC layer, log-softmax) to ``model.onnx``, quantizes it to
``model.int8.onnx``, checks both against PyTorch in ONNX Runtime on
lengths the export never saw, and writes ``deploy.json`` (input, output,
feature settings, labels, blank), ``transcribe_onnx.py`` (a plugin-free
example) and a section of the model card.

Authors
 * speechbrain-prune team 2026
"""

import json
import os
import shutil

import torch

from speechbrain_prune.deploy.onnx_export import (
    INPUT,
    OUTPUT,
    export_onnx,
    onnx_error,
)
from speechbrain_prune.deploy.quantize import file_size, quantize_onnx
from speechbrain_prune.deploy.recognizer import CTCRecognizer, DeployError

FP32, INT8 = "model.onnx", "model.int8.onnx"
EXAMPLE = "transcribe_onnx.py"
MARK = "<!-- speechbrain-prune deploy -->"
#: Shapes the files are checked on: (batch, frames); the export used 64.
CHECK_SHAPES = ((1, 37), (2, 101), (3, 250))


def _fbank_settings(fbank):
    from speechbrain_prune.export.architecture import to_stock

    node, _ = to_stock(fbank)
    return dict(node.kwargs)


def _labels(tokenizer):
    ind2lab = getattr(tokenizer, "ind2lab", None)
    if ind2lab is None:
        raise DeployError(
            "tokenizer: only CTCTextEncoder labels are written to "
            "deploy.json (SentencePiece: decode ids with its own model)"
        )
    return [str(ind2lab[i]) for i in range(len(ind2lab))]


def _blank(asr):
    fn = getattr(asr.hparams, "decoding_function", None)
    keywords = getattr(fn, "keywords", {}) or {}
    if "blank_id" not in keywords:
        raise DeployError(
            "decoding_function: expected ctc_greedy_decode with blank_id "
            "in hyperparams.yaml"
        )
    return int(keywords["blank_id"])


def deploy_folder(folder, atol=1e-4, seed=0):
    """Writes the ONNX files, ``deploy.json``, the example and the card.

    Arguments
    ---------
    folder : str
        A CTC folder written by ``speechbrain-prune export`` (updated).
    atol : float
        Largest allowed difference between ONNX Runtime (fp32) and
        PyTorch; a larger one raises :class:`DeployError`.
    seed : int
        Seed of the random check inputs.

    Returns
    -------
    dict
        What ``deploy.json`` holds (errors, sizes, files).
    """
    rec, asr = CTCRecognizer.from_folder(folder)
    fbank = asr.hparams.compute_features
    n_mels = fbank.compute_fbanks.n_mels
    fp32 = export_onnx(rec, os.path.join(folder, FP32), n_mels)
    int8 = quantize_onnx(fp32, os.path.join(folder, INT8))
    gen = torch.Generator().manual_seed(seed)
    inputs = [
        torch.randn(b, t, n_mels, generator=gen) * 3 + 2
        for b, t in CHECK_SHAPES
    ]
    err = onnx_error(fp32, rec, inputs)
    if not err <= atol:
        raise DeployError(
            f"{fp32}: ONNX Runtime differs from PyTorch by {err:.2e} "
            f"(> {atol:.0e}); the file is not usable"
        )
    err8 = onnx_error(int8, rec, inputs)
    info = {
        "input": INPUT,
        "output": OUTPUT,
        "input_shape": ["batch", "time", n_mels],
        "normalization": "inside the graph (global statistics)",
        "features": _fbank_settings(fbank),
        "blank_index": _blank(asr),
        "labels": _labels(asr.tokenizer),
        "files": {"fp32": FP32, "int8": INT8},
        "bytes": {"fp32": file_size(fp32), "int8": file_size(int8)},
        "max_abs_error_vs_pytorch": {"fp32": err, "int8": err8},
        "checked_shapes": [list(s) for s in CHECK_SHAPES],
    }
    with open(os.path.join(folder, "deploy.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copyfile(
        os.path.join(here, "transcribe.py"), os.path.join(folder, EXAMPLE)
    )
    write_card_section(os.path.join(folder, "README.md"), info)
    return info


def card_section(info):
    """The model card's ONNX section (markdown).

    Example
    -------
    >>> info = {"input_shape": ["batch", "time", 40], "blank_index": 0,
    ...         "bytes": {"fp32": 2e6, "int8": 6e5},
    ...         "max_abs_error_vs_pytorch": {"fp32": 3e-7, "int8": 0.02}}
    >>> print(card_section(info).splitlines()[1])
    ## ONNX (CPU, ONNX Runtime)
    """
    mb = {k: v / 1e6 for k, v in info["bytes"].items()}
    err = info["max_abs_error_vs_pytorch"]
    n_mels = info["input_shape"][2]
    return f"""{MARK}
## ONNX (CPU, ONNX Runtime)

| file | weights | size | max abs error vs PyTorch |
|---|---|---|---|
| `{FP32}` | fp32 | {mb["fp32"]:.2f} MB | {err["fp32"]:.1e} |
| `{INT8}` | int8 (dynamic) | {mb["int8"]:.2f} MB | {err["int8"]:.1e} |

Input `{INPUT}`: (batch, time, {n_mels}) filterbank features of the
recipe's `Fbank` (settings in `deploy.json`), **not** normalised: the
global mean/variance normalisation is inside the graph. Output
`{OUTPUT}`: (batch, time', vocabulary) CTC log-probabilities (blank
index {info["blank_index"]}, labels in `deploy.json`). Batch and time are
dynamic. Errors: on random input of lengths the export never saw.

```bash
python {EXAMPLE} . utterance.wav          # fp32; --int8 for the int8 file
```

```python
from transcribe_onnx import features, greedy_ctc, load, read_wav
sess, config = load(".")  # load(".", int8=True): the int8 file
wav = read_wav("utterance.wav", config["features"]["sample_rate"])
feats = features(wav, config)  # (1, T, {n_mels}), numpy
log_probs = sess.run(None, {{"{INPUT}": feats}})[0][0]
ids = greedy_ctc(log_probs, config["blank_index"])
print("".join(config["labels"][i] for i in ids))
```
"""


def write_card_section(path, info):
    """Adds (or replaces) the ONNX section of the card at ``path``."""
    text = ""
    if os.path.isfile(path):
        with open(path) as f:
            text = f.read().split(MARK)[0].rstrip() + "\n\n"
    with open(path, "w") as f:
        f.write(text + card_section(info))
