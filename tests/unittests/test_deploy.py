"""Deployment: ONNX Runtime equals PyTorch on lengths and batches the export
never saw (LiGRU/LSTM/GRU, uniform and pruned non-uniform widths);
torch.export's limits; int8 in PyTorch and ONNX Runtime."""

import os
import warnings

import onnx
import pytest
import torch
from conftest import build_crdnn
from test_export_hub import N_MELS, pruned_recipe

from speechbrain_prune.deploy import CTCRecognizer, DeployError, GlobalNorm
from speechbrain_prune.deploy.onnx_export import (
    INPUT,
    export_onnx,
    onnx_error,
    onnx_session,
)
from speechbrain_prune.deploy.program import export_program
from speechbrain_prune.deploy.quantize import (
    QuantizedGRU,
    QuantizedLSTM,
    quantize_onnx,
    quantize_torch,
    torch_size,
)
from speechbrain_prune.surgery.modules import NonUniformLiGRU, StackedRNN

ATOL = 1e-4
CASES = [
    (r, w) for r in ("ligru", "lstm", "gru") for w in ("uniform", "nonuniform")
]
#: (batch, frames); the export's example is (2, 16).
SHAPES = ((1, 16), (2, 9), (3, 40), (1, 101))


def inputs(seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, N_MELS, generator=g) * 2 + 1 for b, t in SHAPES]


def nonuniform(model):
    rnn = model.RNN
    if isinstance(rnn, NonUniformLiGRU):
        return len({layer.hidden_size for layer in rnn.rnn}) > 1
    return isinstance(getattr(rnn, "rnn", None), StackedRNN)


@pytest.fixture(scope="module")
def recognizers():
    out = {}
    for rnn, widths in CASES:
        modules, _ = pruned_recipe("ctc", rnn, widths)
        assert nonuniform(modules["model"]) == (widths == "nonuniform")
        out[rnn, widths] = CTCRecognizer.from_modules(modules).eval()
    return out


@pytest.fixture(scope="module")
def onnx_files(recognizers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    return {
        case: export_onnx(
            rec, str(tmp / f"{'_'.join(case)}.onnx"), N_MELS, frames=16
        )
        for case, rec in recognizers.items()
    }


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_onnx_runtime_equals_pytorch(recognizers, onnx_files, case):
    rec, path = recognizers[case], onnx_files[case]
    assert onnx_error(path, rec, inputs()) < ATOL
    # The recurrence is one node over a dynamic length, not unrolled.
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"ligru": "Loop", "lstm": "LSTM", "gru": "GRU"}[case[0]] in ops


def test_normalisation_is_inside_the_graph(recognizers, onnx_files):
    rec = recognizers["gru", "nonuniform"]
    x = inputs()[0]
    sess = onnx_session(onnx_files["gru", "nonuniform"])
    out = torch.from_numpy(sess.run(None, {INPUT: x.numpy()})[0])
    bare = CTCRecognizer(rec.model, rec.output).eval()
    with torch.no_grad():
        assert (out - rec(x)).abs().max() < ATOL
        # Without it the output differs 10x more than the tolerance.
        assert (out - bare(x)).abs().max() > 10 * ATOL


def test_traced_ligru_loop_breaks_on_other_lengths(recognizers, tmp_path):
    """Why the LiGRU layers are swapped: the plain trace unrolls time."""
    rec = recognizers["ligru", "uniform"]
    path = str(tmp_path / "unrolled.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            rec,
            (torch.rand(2, 16, N_MELS),),
            path,
            dynamo=False,
            input_names=[INPUT],
            dynamic_axes={INPUT: {0: "batch", 1: "time"}},
        )
    with pytest.raises(Exception):
        onnx_error(path, rec, [torch.rand(1, 40, N_MELS)])


# torch.export -----------------------------------------------------------
def test_torch_export_fixed_length_only(recognizers):
    """torch.export keeps a fixed length (LiGRU: batch too); LSTM/GRU
    keep a dynamic batch; no RNN keeps a dynamic time axis."""
    ligru = recognizers["ligru", "nonuniform"]
    prog = export_program(ligru, N_MELS, frames=12)
    x = torch.rand(2, 12, N_MELS)
    with torch.no_grad():
        assert (prog.module()(x) - ligru(x)).abs().max() < 1e-5
    with pytest.raises(DeployError, match="time axis dynamic.*Constraints"):
        export_program(ligru, N_MELS, frames=12, dynamic_time=True)
    with pytest.raises(DeployError, match="batch axis dynamic.*Constraints"):
        export_program(ligru, N_MELS, frames=12, dynamic_batch=True)
    lstm = recognizers["lstm", "nonuniform"]
    prog = export_program(lstm, N_MELS, frames=12, dynamic_batch=True)
    x = torch.rand(5, 12, N_MELS)
    with torch.no_grad():
        assert (prog.module()(x) - lstm(x)).abs().max() < 1e-5
    with pytest.raises(DeployError, match="time axis dynamic.*Constraints"):
        export_program(lstm, N_MELS, frames=12, dynamic_time=True)


# int8 -------------------------------------------------------------------
def wider(rnn):
    """Wide enough for int8 to save space (tiny layers are all overhead)."""
    model = build_crdnn(n_feats=N_MELS, rnn=rnn, rnn_neurons=64, dnn_neurons=64)
    norm = GlobalNorm(torch.ones(N_MELS), torch.full((N_MELS,), 2.0))
    return CTCRecognizer(model, torch.nn.Linear(64, 10), norm).eval()


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "ligru"])
def test_torch_int8_runs_speechbrain_rnns(recognizers, case):
    rec = recognizers[case]
    q = quantize_torch(rec)
    kinds = {type(m) for m in q.modules()}
    assert {QuantizedLSTM if case[0] == "lstm" else QuantizedGRU} <= kinds
    assert not any(  # the float model is untouched
        "quantized" in type(m).__module__ for m in rec.modules()
    )
    for x in inputs():
        with torch.no_grad():
            ref, out = rec(x), q(x)
        assert out.shape == ref.shape
        assert 0 < (out - ref).abs().max() < 0.1


def test_plain_quantize_dynamic_breaks_speechbrain_lstm(recognizers):
    """The trap handled: SpeechBrain calls rnn.flatten_parameters()."""
    rec = recognizers["lstm", "uniform"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(
            rec, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8
        )
    with pytest.raises(AttributeError, match="flatten_parameters"):
        q(inputs()[0])


@pytest.mark.parametrize("rnn", ["ligru", "lstm"])
def test_int8_smaller_and_close(rnn, tmp_path):
    rec = wider(rnn)
    q = quantize_torch(rec)
    if rnn == "lstm":  # LiGRU's state holds 16000 float dropout masks
        assert torch_size(q) < 0.6 * torch_size(rec)
    xs = inputs()
    with torch.no_grad():
        err = max((q(x) - rec(x)).abs().max().item() for x in xs)
    assert 0 < err < 0.2
    fp32 = export_onnx(rec, str(tmp_path / "m.onnx"), N_MELS, frames=16)
    int8 = quantize_onnx(fp32, str(tmp_path / "m.int8.onnx"))
    # LiGRU: the recurrent MatMul inside the ONNX Loop stays float.
    shrink = 0.8 if rnn == "ligru" else 0.6
    assert os.path.getsize(int8) < shrink * os.path.getsize(fp32)
    assert 0 < onnx_error(int8, rec, xs) < 0.2
    assert onnx_error(fp32, rec, xs) < ATOL
