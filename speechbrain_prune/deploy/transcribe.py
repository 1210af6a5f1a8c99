"""Transcribes audio with a deployed folder's ONNX model (greedy CTC).

Copied into the folder as ``transcribe_onnx.py`` by ``speechbrain-prune
deploy``; it does not import speechbrain-prune. The model runs in ONNX
Runtime; the features (the recipe's ``Fbank``, settings in
``deploy.json``) are computed with SpeechBrain's ``Fbank`` in PyTorch, as
the recipe did (the normalisation is inside the ONNX graph)::

    python transcribe_onnx.py FOLDER utterance.wav [--int8]

Needs: onnxruntime, numpy, soundfile, torch and speechbrain (features).

Authors
 * speechbrain-prune team 2026
"""

import argparse
import json
import os

import numpy as np


def greedy_ctc(log_probs, blank, length=None):
    """Best path: argmax per frame, repeats merged, blanks dropped.

    Arguments
    ---------
    log_probs : numpy.ndarray
        (frames, vocabulary) of one utterance.
    blank : int
        The blank's index.
    length : int, optional
        Frames to decode (the rest is padding).

    Example
    -------
    >>> lp = np.log(np.eye(3)[[1, 1, 0, 1, 2, 2, 0]] + 1e-3)
    >>> greedy_ctc(lp, blank=0)
    [1, 1, 2]
    """
    best = np.asarray(log_probs)[:length].argmax(-1)
    out, prev = [], None
    for t in best.tolist():
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out


def load(folder, int8=False, threads=None):
    """``(session, config)``: ONNX Runtime session and ``deploy.json``."""
    import onnxruntime as ort

    with open(os.path.join(folder, "deploy.json")) as f:
        config = json.load(f)
    name = config["files"]["int8" if int8 else "fp32"]
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(
        os.path.join(folder, name),
        sess_options=opts,
        providers=["CPUExecutionProvider"],
    )
    return sess, config


def features(wav, config):
    """Filterbank features (1, frames, n_mels) of a mono waveform."""
    import torch
    from speechbrain.lobes.features import Fbank

    fbank = Fbank(**config["features"]).eval()
    with torch.no_grad():
        return fbank(torch.as_tensor(wav, dtype=torch.float32)[None]).numpy()


def read_wav(path, sample_rate):
    """A mono float32 waveform; the file must have ``sample_rate``."""
    import soundfile

    wav, sr = soundfile.read(path, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise ValueError(
            f"{path}: {sr} Hz; the model expects {sample_rate} Hz "
            "(resample it first)"
        )
    return wav.mean(axis=1)


def transcribe(folder, path, int8=False, threads=None):
    """The text of an audio file, decoded greedily."""
    sess, config = load(folder, int8, threads)
    wav = read_wav(path, config["features"]["sample_rate"])
    feats = features(wav, config)
    log_probs = sess.run(None, {config["input"]: feats})[0][0]
    ids = greedy_ctc(log_probs, config["blank_index"])
    return "".join(config["labels"][i] for i in ids)


def main(argv=None):
    """``python transcribe_onnx.py FOLDER AUDIO [--int8]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("audio", nargs="+")
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    for path in args.audio:
        print(
            f"{path}\t{transcribe(args.folder, path, args.int8, args.threads)}"
        )


if __name__ == "__main__":
    main()
