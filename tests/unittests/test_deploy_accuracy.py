"""``benchmarks/deploy_accuracy.py`` on a tiny exported folder: its error
rates are those of the transcripts it writes, and ONNX Runtime fp32
transcribes as PyTorch and SpeechBrain's ``EncoderASR`` do."""

import csv
import importlib.util
import os

import pytest
import soundfile
import torch
from test_export_hub import LABELS, exported_ctc_folder

from speechbrain_prune.demo import error_rates

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "benchmarks", "deploy_accuracy.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("deploy_accuracy", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run(tmp_path_factory, bench):
    tmp = tmp_path_factory.mktemp("deploy_accuracy")
    folder = exported_ctc_folder(tmp / "pruned")
    g = torch.Generator().manual_seed(0)
    words = [LABELS[0] * 2, f"{LABELS[1]} {LABELS[2]}", LABELS[3]]
    test_csv = tmp / "test.csv"
    with open(test_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "duration", "wav", "spk_id", "wrd"])
        for i, text in enumerate(words):
            wav = tmp / f"u{i}.wav"
            sig = torch.randn(8000 + 3000 * i, generator=g) * 0.1
            soundfile.write(str(wav), sig.numpy(), 16000)
            w.writerow([f"u{i}", 1.0, str(wav), "s", text])
    out = tmp / "out"
    argv = ["--models", f"pruned={folder}", "--test-csv", str(test_csv)]
    argv += ["--threads", "1", "--seconds", "0.5", "--repeats", "1"]
    argv += ["--warmup", "0", "--tag", "t", "--out", str(out)]
    rows = bench.main(argv)
    return rows, out / "deploy_accuracy_t"


def test_error_rates_are_those_of_the_written_transcripts(bench, run):
    rows, stem = run
    for ext in (".md", ".csv", ".png", "_transcripts.tsv"):
        assert os.path.isfile(str(stem) + ext)
    transcripts = bench.read_transcripts(str(stem) + "_transcripts.tsv")
    with open(str(stem) + ".csv") as f:
        table = list(csv.DictReader(f))
    runtimes = [bench.REFERENCE, *bench.RUNTIMES]
    assert [r["runtime"] for r in table] == runtimes
    for r in table:
        triples = transcripts["pruned", r["runtime"]]
        assert [t[0] for t in triples] == ["u0", "u1", "u2"]
        wer, cer = error_rates(triples)
        assert float(r["WER"]) == pytest.approx(wer, abs=1e-3)
        assert float(r["CER"]) == pytest.approx(cer, abs=1e-3)
        changed = sum(
            a[2] != b[2]
            for a, b in zip(triples, transcripts["pruned", "PyTorch fp32"])
        )
        assert int(r["changed_vs_fp32"]) == changed
    timed = {r["runtime"]: r for r in table if r["ms_1t"]}
    assert sorted(timed) == sorted(bench.RUNTIMES)
    assert float(timed["PyTorch fp32"]["x_ref_1t"]) == 1.0


def test_onnx_fp32_transcribes_as_pytorch_and_encoder_asr(bench, run):
    _, stem = run
    transcripts = bench.read_transcripts(str(stem) + "_transcripts.tsv")
    torch_fp32 = transcripts["pruned", "PyTorch fp32"]
    assert transcripts["pruned", "ORT fp32"] == torch_fp32
    assert transcripts["pruned", bench.REFERENCE] == torch_fp32
    # An untrained model still emits labels: the comparison is not vacuous.
    assert any(hyp for _, _, hyp in torch_fp32)
