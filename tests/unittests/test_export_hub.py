"""Exported folders load with SpeechBrain alone and compute what the pruned
model computes: CTC and seq2seq, LiGRU/LSTM/GRU, uniform and non-uniform
widths, from a local folder and from a hub cache (offline)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import speechbrain as sb
import torch
from conftest import build_crdnn, random_removals
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.decoders.scorer import CTCScorer, ScorerBuilder
from speechbrain.decoders.seq2seq import (
    S2SRNNBeamSearcher,
    S2SRNNGreedySearcher,
)
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization

from speechbrain_prune.export import ExportError, export_asr
from speechbrain_prune.export.architecture import check_stock, to_stock
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.plan import PruningPlan
from speechbrain_prune.surgery.modules import NonUniformLiGRU, StackedRNN

ATOL = 1e-5
N_MELS = 20
LABELS = list(" ABCDE'")
HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [
    (shape, rnn, widths)
    for shape in ("ctc", "seq2seq")
    for rnn in ("ligru", "lstm", "gru")
    for widths in ("uniform", "nonuniform")
]


BOS, EOS, BLANK = 0, 1, 2


def label_encoder():
    """Characters with bos 0, eos 1, blank 2 (as the TIMIT seq2seq recipe)."""
    enc = CTCTextEncoder()
    enc.insert_bos_eos(bos_index=BOS, eos_index=EOS)
    enc.insert_blank(index=BLANK)
    enc.update_from_iterable(LABELS, sequence_input=False)
    return enc


def uneven_removals(groups, seed):
    """A different number of channels removed from each group."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, group in enumerate(groups.prunable()):
        n = min(group.size - group.min_size, 1 + i % 3)
        out[group.id] = torch.randperm(group.size, generator=g)[:n].sort()[0]
    return out


def exported_ctc_folder(folder, rnn="lstm", widths="nonuniform"):
    """A pruned tiny CTC recipe exported to ``folder`` (as the deploy
    tests start from); returns the folder."""
    modules, plan = pruned_recipe("ctc", rnn, widths)
    export_asr(
        str(folder),
        modules,
        Fbank(n_mels=N_MELS),
        label_encoder(),
        blank_index=BLANK,
        plan=plan,
        card={"latency_repeats": 1},
    )
    return folder


def pruned_recipe(shape, rnn, widths, seed=0):
    """A tiny recipe's modules, pruned at random (eval mode)."""
    enc = build_crdnn(seed=seed, n_feats=N_MELS, rnn=rnn, time_pooling=True)
    n_out = len(LABELS) + 3
    normalize = InputNormalization(norm_type="global")
    normalize(torch.randn(3, 40, N_MELS) * 2 + 1, torch.ones(3))
    modules = {"normalize": normalize.eval()}
    if shape == "ctc":
        modules["model"] = enc
        modules["output"] = sb.nnet.linear.Linear(n_out, input_size=9)
    else:
        modules["enc"] = enc
        modules["emb"] = sb.nnet.embedding.Embedding(n_out, 8)
        modules["dec"] = sb.nnet.RNN.AttentionalRNNDecoder(
            "gru",
            "location",
            10,
            6,
            1,
            enc_dim=9,
            input_size=8,
            channels=3,
            kernel_size=5,
        )
        modules["ctc_lin"] = sb.nnet.linear.Linear(n_out, input_size=9)
        modules["seq_lin"] = sb.nnet.linear.Linear(n_out, input_size=10)
    keys = [k for k in modules if k != "normalize"]
    root = torch.nn.ModuleDict({k: modules[k] for k in keys}).eval()
    x = torch.rand(2, 12, N_MELS)

    def run(r):
        if shape == "ctc":
            return r["output"](r["model"](x))
        h = r["enc"](x)
        r["ctc_lin"](h)
        return r["dec"](r["emb"](torch.zeros(2, 2).long()), h, torch.ones(2))

    groups = discover_groups(root, run)
    if widths == "uniform":
        removals = random_removals(groups, 0.3, seed)
    else:
        removals = uneven_removals(groups, seed)
    plan = PruningPlan()
    plan.prune(root, groups, removals)
    return modules, plan


def searcher_for(modules, rnn):
    """Greedy for LSTM, beam search with a CTC scorer otherwise."""
    common = dict(
        embedding=modules["emb"],
        decoder=modules["dec"],
        linear=modules["seq_lin"],
        bos_index=BOS,
        eos_index=EOS,
        min_decode_ratio=0.0,
        max_decode_ratio=0.5,
    )
    if rnn == "lstm":
        return S2SRNNGreedySearcher(**common)
    scorer = ScorerBuilder(
        full_scorers=[CTCScorer(modules["ctc_lin"], BLANK, EOS)],
        weights={"ctc": 0.4},
    )
    return S2SRNNBeamSearcher(beam_size=3, scorer=scorer, **common)


def inputs():
    g = torch.Generator().manual_seed(1)
    return {
        "wavs": torch.randn(2, 8000, generator=g) * 0.1,
        "lens": torch.tensor([1.0, 0.75]),
        "tokens": torch.randint(len(LABELS) + 3, (2, 4), generator=g),
    }


def reference(shape, modules, searcher, fbank, enc_labels, x):
    """The in-memory pruned model's outputs on ``x``."""
    wavs, lens = x["wavs"], x["lens"]
    log_softmax = sb.nnet.activations.Softmax(apply_log=True)
    with torch.no_grad():
        feats = modules["normalize"](fbank(wavs), lens)
        if shape == "ctc":
            lp = log_softmax(modules["output"](modules["model"](feats)))
            hyps = ctc_greedy_decode(lp, lens, blank_id=BLANK)
            out = {"log_probs": lp}
        else:
            h = modules["enc"](feats)
            e = modules["emb"](x["tokens"])
            d, _ = modules["dec"](e, h, lens)
            out = {
                "ctc_log_probs": log_softmax(modules["ctc_lin"](h)),
                "seq_log_probs": log_softmax(modules["seq_lin"](d)),
            }
            hyps = searcher(h, lens)[0]
    # The transcript: EncoderASR joins the labels (CTCTextEncoder);
    # EncoderDecoderASR's SentencePiece writes special labels as nothing.
    special = set()
    if shape == "seq2seq":
        special = {enc_labels.lab2ind[k] for k in ("<bos>", "<eos>", "<blank>")}
    out["tokens"] = [[int(t) for t in h] for h in hyps]
    out["words"] = [
        "".join(enc_labels.decode_ndim([t for t in h if t not in special]))
        for h in out["tokens"]
    ]
    return out


def hub_cache(folder, cache, repo_id):
    """Lays ``folder`` out as the Hugging Face cache holds a download."""
    org, name = repo_id.split("/")
    base = os.path.join(cache, f"models--{org}--{name}")
    snapshot = os.path.join(base, "snapshots", "0" * 40)
    shutil.copytree(folder, snapshot)
    os.makedirs(os.path.join(base, "refs"))
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write("0" * 40)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case exported, then loaded in ONE plugin-free subprocess."""
    tmp = tmp_path_factory.mktemp("hub")
    x = inputs()
    torch.save(x, tmp / "inputs.pt")
    fbank = Fbank(n_mels=N_MELS)
    enc_labels = label_encoder()
    refs, jobs = {}, []
    for case in CASES:
        shape, rnn, widths = case
        modules, plan = pruned_recipe(shape, rnn, widths)
        searcher = searcher_for(modules, rnn) if shape == "seq2seq" else None
        folder = tmp / "_".join(case)
        export_asr(
            str(folder),
            modules,
            fbank,
            enc_labels,
            searcher=searcher,
            blank_index=BLANK,
            plan=plan,
            card={"latency_repeats": 1},
        )
        refs[case] = (
            reference(shape, modules, searcher, fbank, enc_labels, x),
            modules,
        )
        jobs.append(
            {
                "source": str(folder),
                "config": str(folder / "config.json"),
                "savedir": str(tmp / ("load_" + "_".join(case))),
                "inputs": str(tmp / "inputs.pt"),
                "out": str(tmp / ("out_" + "_".join(case) + ".pt")),
            }
        )
    # One folder again, from a hub cache: a repository id, network off.
    cache = tmp / "hf_cache"
    hub_cache(str(tmp / "seq2seq_ligru_nonuniform"), str(cache), "sbp/pruned")
    jobs.append(dict(jobs[CASES.index(("seq2seq", "ligru", "nonuniform"))]))
    jobs[-1].update(
        source="sbp/pruned",
        savedir=str(tmp / "load_from_cache"),
        out=str(tmp / "out_cache.pt"),
    )
    with open(tmp / "jobs.json", "w") as f:
        json.dump(jobs, f)
    env = dict(
        os.environ,
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    env.pop("PYTHONPATH", None)
    res = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "hub_loader.py"),
            str(tmp / "jobs.json"),
        ],
        cwd=str(tmp),
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = {case: torch.load(j["out"]) for case, j in zip(CASES, jobs)}
    loaded["cache"] = torch.load(jobs[-1]["out"])
    return tmp, refs, loaded


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_folder_loads_without_plugin_and_matches(exported, case):
    tmp, refs, loaded = exported
    ref, modules = refs[case]
    out = loaded[case]
    for key in ref:
        if key in ("words", "tokens"):
            assert out[key] == ref[key]
        else:
            assert out[key].shape == ref[key].shape
            assert (out[key] - ref[key]).abs().max().item() < ATOL
    assert not any(m.startswith("speechbrain_prune") for m in out["modules"])
    # The case is what it claims: non-uniform RNN widths use surgery's
    # modules, which the folder expresses with stock ones.
    enc = modules["model" if case[0] == "ctc" else "enc"]
    nonuniform = (
        isinstance(enc.RNN, NonUniformLiGRU)
        and len({layer.hidden_size for layer in enc.RNN.rnn}) > 1
        or isinstance(getattr(enc.RNN, "rnn", None), StackedRNN)
    )
    assert nonuniform == (case[2] == "nonuniform")


def test_hub_cache_offline_matches_local_folder(exported):
    tmp, refs, loaded = exported
    case = ("seq2seq", "ligru", "nonuniform")
    assert loaded["cache"]["words"] == loaded[case]["words"]
    for key in ("ctc_log_probs", "seq_log_probs"):
        assert torch.equal(loaded["cache"][key], loaded[case][key])


def test_folder_files_and_card(exported):
    tmp, refs, _ = exported
    ctc, s2s = tmp / "ctc_gru_nonuniform", tmp / "seq2seq_gru_uniform"
    for folder, interface in ((ctc, "EncoderASR"), (s2s, "EncoderDecoderASR")):
        with open(folder / "config.json") as f:
            assert json.load(f) == {"speechbrain": {"interface": interface}}
        text = (folder / "hyperparams.yaml").read_text()
        assert "speechbrain_prune" not in text
        card = (folder / "README.md").read_text()
        assert f"{interface}.from_hparams" in card
        assert "| params |" in card and "kept width" in card
    for name in ("model", "output", "normalizer", "tokenizer"):
        assert (ctc / f"{name}.ckpt").is_file()
    # The card's widths are the pruned ones, next to the dense ones.
    modules = refs[("ctc", "gru", "nonuniform")][1]
    card = (ctc / "README.md").read_text()
    w0 = modules["model"].RNN.rnn.layers[0].hidden_size
    assert f"| model.RNN.layer0 | GRU | {w0} | 7 |" in card
    assert "S2SRNNBeamSearcher" in (s2s / "hyperparams.yaml").read_text()


def test_stock_composition_keeps_weights_exactly_once():
    modules, _ = pruned_recipe("ctc", "lstm", "nonuniform")
    model = modules["model"]
    node, keymap = to_stock(model)
    assert sorted(keymap) == sorted(model.state_dict())
    assert len(set(keymap.values())) == len(keymap)
    stock = check_stock(model, node, keymap, ((torch.rand(2, 12, N_MELS),), {}))
    assert not any(
        type(m).__module__.startswith("speechbrain_prune")
        for m in stock.modules()
    )
    assert count(stock) == count(model)


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_unknown_layer_is_refused_with_its_name():
    model = build_crdnn(n_feats=N_MELS)
    model.DNN.block_0.act = torch.nn.Hardswish()
    with pytest.raises(ExportError, match="DNN.block_0.act.*Hardswish"):
        to_stock(model)


def test_language_model_scorer_is_refused(tmp_path):
    from speechbrain.decoders.scorer import RNNLMScorer

    modules, plan = pruned_recipe("seq2seq", "gru", "uniform")
    lm = torch.nn.Linear(2, 2)
    searcher = S2SRNNBeamSearcher(
        modules["emb"],
        modules["dec"],
        modules["seq_lin"],
        bos_index=BOS,
        eos_index=EOS,
        min_decode_ratio=0.0,
        max_decode_ratio=1.0,
        beam_size=2,
        scorer=ScorerBuilder(
            full_scorers=[RNNLMScorer(lm)], weights={"rnnlm": 0.5}
        ),
    )
    with pytest.raises(ExportError, match="RNNLMScorer"):
        export_asr(
            str(tmp_path / "f"),
            modules,
            Fbank(n_mels=N_MELS),
            label_encoder(),
            searcher=searcher,
            card={"latency_repeats": 1},
        )
