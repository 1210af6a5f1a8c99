"""``speechbrain-prune deploy FOLDER`` end to end: a folder written by
``export`` gains ONNX files that equal PyTorch, and its plugin-free example
transcribes a file as SpeechBrain's ``EncoderASR`` does."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from test_export_hub import BLANK, N_MELS, exported_ctc_folder, label_encoder

from speechbrain_prune.deploy.folder import MARK, write_card_section
from speechbrain_prune.export import load_asr

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    folder = exported_ctc_folder(tmp / "pruned")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "speechbrain_prune", "deploy", str(folder)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    wav = tmp / "utt.wav"
    g = torch.Generator().manual_seed(0)
    soundfile.write(
        str(wav), (torch.randn(19000, generator=g) * 0.1).numpy(), 16000
    )
    return folder, wav, res.stdout


def test_files_and_settings(deployed):
    folder, _, stdout = deployed
    with open(folder / "deploy.json") as f:
        info = json.load(f)
    for kind in ("fp32", "int8"):
        assert (folder / info["files"][kind]).is_file()
        assert f"{info['files'][kind]}:" in stdout
    assert info["max_abs_error_vs_pytorch"]["fp32"] < 1e-4
    assert info["blank_index"] == BLANK
    assert info["labels"] == [
        label_encoder().ind2lab[i] for i in range(len(info["labels"]))
    ]
    assert info["features"]["n_mels"] == N_MELS
    card = (folder / "README.md").read_text()
    assert card.count(MARK) == 1 and "| params |" in card
    assert "model.int8.onnx" in card
    # Deploying again replaces the section instead of adding one.
    write_card_section(str(folder / "README.md"), info)
    assert (folder / "README.md").read_text() == card


def example_module(folder):
    spec = importlib.util.spec_from_file_location(
        "transcribe_onnx", folder / "transcribe_onnx.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_matches_speechbrain(deployed, tmp_path):
    folder, wav, _ = deployed
    asr = load_asr(str(folder), savedir=str(tmp_path / "sb"))
    expected = asr.transcribe_file(str(wav))
    signal = asr.load_audio(str(wav))[None]
    with torch.no_grad():
        ref = asr.encode_batch(signal, torch.ones(1))[0].numpy()
    # The example's own feature path and session, in this process ...
    ex = example_module(folder)
    for int8, tol in ((False, 1e-4), (True, 0.2)):
        sess, config = ex.load(str(folder), int8=int8)
        feats = ex.features(ex.read_wav(str(wav), 16000), config)
        out = sess.run(None, {config["input"]: feats})[0][0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < tol
    # ... and as a command in a process where the plugin cannot load.
    code = (
        f"import sys; sys.path.insert(0, {HERE!r}); "
        "from hub_loader import BlockPlugin; "
        "sys.meta_path.insert(0, BlockPlugin()); "
        "import runpy; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, "-c", code, "transcribe_onnx.py", ".", str(wav)],
        cwd=str(folder),
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.rstrip("\n").split("\t")[1] == expected


def test_wrong_sample_rate_is_refused(deployed, tmp_path):
    folder, _, _ = deployed
    path = tmp_path / "8k.wav"
    soundfile.write(str(path), np.zeros(800, dtype="float32"), 8000)
    with pytest.raises(ValueError, match="8000 Hz.*16000 Hz"):
        example_module(folder).transcribe(str(folder), str(path))
