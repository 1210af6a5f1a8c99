"""Prune the model you already have: a run trained without pruning, a stage
configured after dense epochs, a pretrained model in hub layout, a CTC head
that later epochs skip."""

import glob
import os
import shutil

import pytest
import torch
from recipe_runner import TINY_CORPUS, build, evaluate, fit, tiny_overrides

from speechbrain_prune.training.pruner import PRUNING_STEPS


def opts(out, data, **extra):
    return tiny_overrides(
        out, data, dict({"embedded_corpus": TINY_CORPUS}, **extra)
    )


def dense_opts(out, data, **extra):
    """For train.yaml: no pruning keys."""
    o = opts(out, data, **extra)
    return {k: v for k, v in o.items() if not k.startswith("prune_")}


def seq2seq_opts(out, data, **extra):
    """For the seq2seq recipe, whose YAML names fewer sizes."""
    o = opts(out, data, dec_neurons=24, **extra)
    return {
        k: v for k, v in o.items() if k not in ("cnn_channels", "rnn_neurons")
    }


def checkpoints(save_folder):
    return sorted(glob.glob(os.path.join(save_folder, "CKPT+*")))


def test_stage_measure_differs_from_first_epochs(tmp_path):
    """Issue 13: dense epochs recorded with MACs as the measure, then a
    stage counting parameters: its target is relative to the unpruned
    model's parameters, and the log's percentages are right."""
    out, data = tmp_path / "run", tmp_path / "data"
    first = opts(out, data, number_of_epochs=1, prune_start_epoch=100)
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", first)
    fit(brain, hparams, datasets)
    pruner = hparams["pruner"]
    assert not len(pruner.plan)
    base_params = pruner.base_params
    second = opts(
        out,
        data,
        number_of_epochs=2,
        prune_start_epoch=2,
        prune_target=0.5,
        prune_measure="params",
    )
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", second)
    fit(brain, hparams, datasets)
    pruner = hparams["pruner"]
    (record,) = pruner.history
    assert pruner.base_params == base_params
    assert record["params_before"] == base_params
    assert record["params_after"] <= 0.5 * base_params
    assert record["params_after"] >= 0.4 * base_params
    log = open(hparams["train_log"]).read()
    assert "target 50% fewer parameters than unpruned" in log
    share = record["params_after"] / base_params
    assert f"({share:.1%} of unpruned)" in log


def test_stage_that_cannot_remove_anything_is_an_error(tmp_path):
    """A stage whose target is unmet and that removes nothing stops the
    run with the reason, never a silent success."""
    out, data = tmp_path / "run", tmp_path / "data"
    o = opts(out, data, number_of_epochs=1, prune_start_epoch=1)
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", o)
    pruner = hparams["pruner"]
    pruner.scorer.score = lambda *a, **k: {}
    pruner._selector = lambda *args: _NothingSelector()
    with pytest.raises(RuntimeError, match="did not reach its target"):
        fit(brain, hparams, datasets)


class _NothingSelector:
    def check(self, *args, **kwargs):
        return 1.0

    def select(self, *args, **kwargs):
        return {}


def test_run_trained_with_stock_checkpointer_is_pruned(tmp_path):
    """Issue 12: checkpoints of SpeechBrain's stock Checkpointer carry no
    pruner state; with the pruning edit the run resumes them as "no stage
    done yet", prunes at the next due stage, and keeps the dense
    checkpoint."""
    out, data = tmp_path / "run", tmp_path / "data"
    brain, hparams, datasets = build(
        "CTC", "train.yaml", dense_opts(out, data, number_of_epochs=1)
    )
    fit(brain, hparams, datasets)
    (dense,) = checkpoints(hparams["save_folder"])
    assert not os.path.exists(os.path.join(dense, "pruner.ckpt"))
    dense_weights = torch.load(os.path.join(dense, "model.ckpt"))
    o = opts(out, data, number_of_epochs=2, prune_start_epoch=2)
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", o)
    fit(brain, hparams, datasets)
    pruner = hparams["pruner"]
    assert len(pruner.plan) == 1 and pruner.done == [0]
    (record,) = pruner.history
    assert record["epoch"] == 2
    assert record["macs_before"] == record["base_macs"]  # resumed dense
    assert record["macs_after"] <= 0.72 * record["base_macs"]
    # The dense run's checkpoint is still there, untouched.
    assert os.path.isdir(dense)
    again = torch.load(os.path.join(dense, "model.ckpt"))
    assert all(torch.equal(again[k], dense_weights[k]) for k in dense_weights)
    # The resumed weights were the dense run's: epoch 2 started from them.
    log = open(hparams["train_log"]).read()
    assert "epoch: 1" in log and "epoch: 2" in log


def test_seq2seq_dense_run_is_pruned_under_the_edit(tmp_path):
    """The seq2seq recipe's dense train.yaml (stock Checkpointer) and its
    pruned variant differ by the pruning blocks only: a dense epoch, then
    the stage on the resumed dense weights."""
    out, data = tmp_path / "run", tmp_path / "data"
    dense = seq2seq_opts(out, data, number_of_epochs=1)
    dense = {k: v for k, v in dense.items() if not k.startswith("prune_")}
    brain, hparams, datasets = build("seq2seq", "train.yaml", dense)
    fit(brain, hparams, datasets)
    assert "pruner" not in hparams
    (ckpt,) = checkpoints(hparams["save_folder"])
    assert not os.path.exists(os.path.join(ckpt, "pruner.ckpt"))
    o = seq2seq_opts(out, data, number_of_epochs=2, prune_start_epoch=2)
    brain, hparams, datasets = build("seq2seq", "train_pruned.yaml", o)
    fit(brain, hparams, datasets)
    (record,) = hparams["pruner"].history
    assert record["epoch"] == 2
    assert record["macs_before"] == record["base_macs"]  # resumed dense
    assert record["params_after"] < record["params_before"]


def test_pretrained_model_in_hub_layout_is_pruned(tmp_path):
    """Issue 12: a pretrained CRDNN in a folder laid out as SpeechBrain's
    hub models (hyperparams.yaml + one .ckpt per loadable), loaded through
    SpeechBrain's Pretrainer, pruned and fine-tuned, then tested."""
    out, data = tmp_path / "dense", tmp_path / "data"
    brain, hparams, datasets = build(
        "CTC", "train.yaml", dense_opts(out, data, number_of_epochs=2)
    )
    fit(brain, hparams, datasets)
    trained = {k: v.clone() for k, v in hparams["model"].state_dict().items()}
    hub = tmp_path / "hub_model"
    hub.mkdir()
    ckpt = checkpoints(hparams["save_folder"])[-1]
    for name in ("model", "output", "normalizer"):
        shutil.copy(os.path.join(ckpt, f"{name}.ckpt"), hub / f"{name}.ckpt")
    (hub / "hyperparams.yaml").write_text("# a pretrained CRDNN\n")

    o = opts(
        tmp_path / "pruned",
        data,
        pretrained_path=str(hub),
        number_of_epochs=2,
        prune_start_epoch=1,
    )
    brain, hparams, datasets = build("CTC", "prune_pretrained.yaml", o)
    pretrainer = hparams["pretrainer"]
    pretrainer.collect_files()
    pretrainer.load_collected()
    loaded = hparams["model"].state_dict()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    fit(brain, hparams, datasets)
    evaluate(brain, hparams, datasets)
    (record,) = hparams["pruner"].history
    assert record["macs_before"] == record["base_macs"]
    assert record["macs_after"] <= 0.72 * record["base_macs"]
    assert "test CER" in open(hparams["train_log"]).read()
    # The folder the user downloaded is left as it was.
    assert sorted(os.listdir(hub)) == [
        "hyperparams.yaml",
        "model.ckpt",
        "normalizer.ckpt",
        "output.ckpt",
    ]


@pytest.mark.parametrize("resumed", [False, True])
def test_ctc_head_that_later_epochs_skip(resumed, tmp_path):
    """Issue 12: the seq2seq recipe's CTC head trains only in epoch 1
    (``number_of_ctc_epochs``); a stage at epoch 2 or 3 still prunes the
    encoder together with the head, without any `couplings` in YAML. With
    ``resumed``, the run starts at epoch 3 from a dense checkpoint without
    pruner state, so no forward of this process ever called the head: a dry
    run of the first epoch's forward shows the coupling."""
    out, data = tmp_path / "run", tmp_path / "data"
    common = {"number_of_ctc_epochs": 1, "prune_target": 0.4}
    if resumed:
        dense = seq2seq_opts(
            out, data, number_of_epochs=2, prune_start_epoch=100
        )
        brain, hparams, datasets = build(
            "seq2seq", "train_pruned.yaml", dict(dense, **common)
        )
        fit(brain, hparams, datasets)
        assert not len(hparams["pruner"].plan)
        # As if trained with the stock Checkpointer: no pruner state, so
        # nothing learned in epoch 1 is kept.
        for ckpt in checkpoints(hparams["save_folder"]):
            os.remove(os.path.join(ckpt, "pruner.ckpt"))
    epochs = 3 if resumed else 2
    o = seq2seq_opts(
        out, data, number_of_epochs=epochs, prune_start_epoch=epochs
    )
    brain, hparams, datasets = build(
        "seq2seq", "train_pruned.yaml", dict(o, **common)
    )
    fit(brain, hparams, datasets)
    pruner = hparams["pruner"]
    assert pruner.learned_couplings.get("ctc_lin") == "enc"
    assert len(pruner.plan) == 1
    enc_out = hparams["enc"](torch.rand(2, 50, 40)).shape[-1]
    assert hparams["ctc_lin"].w.in_features == enc_out
    pruned_enc = [
        gid
        for gid, kept, total in pruner.history[0]["groups"]
        if gid.startswith("enc.DNN") and kept < total
    ]
    if pruned_enc:  # the head's input columns followed the encoder
        assert enc_out < hparams["dnn_neurons"]
    ckpt = checkpoints(hparams["save_folder"])[-1]
    meta = open(os.path.join(ckpt, "CKPT.yaml")).read()
    assert f"{PRUNING_STEPS}: 1" in meta
    evaluate(brain, hparams, datasets)


def test_latency_stage_times_the_recipe_forward(tmp_path):
    """Issue 11: a stage with a latency target times the recipe's own
    forward under the stated conditions, keeps the table and its decision
    in the save folder, and a rerun of the stage (as after a kill) makes
    the same decision from that file without timing again."""
    from speechbrain_prune import LatencySetup

    out, data = tmp_path / "run", tmp_path / "data"
    o = opts(
        out,
        data,
        number_of_epochs=2,
        prune_start_epoch=2,
        prune_target=0.2,
        prune_measure="latency",
    )
    brain, hparams, datasets = build("CTC", "train_pruned.yaml", o)
    pruner = hparams["pruner"]
    # A deterministic "device": time is proportional to the MACs of the
    # recipe's forward under the setup (real timing is noise on a shared
    # CPU; the benchmark measures it).
    from speechbrain_prune.costs import count_macs

    def mac_seconds(model, run, *args):
        run(model)  # its first run primes the copy's normalisers
        return 1e-9 * count_macs(model, run=run)

    pruner.latency = LatencySetup(
        seconds=1.0,
        repeats=3,
        warmup=1,
        rounds=2,
        fractions=(0.5,),
        timer=mac_seconds,
    )
    fit(brain, hparams, datasets)
    (record,) = pruner.history
    lat = record["latency"]
    assert lat["before"] == pytest.approx(1.0)  # dense vs dense
    assert lat["after"] <= 0.8 + 0.02  # the end-to-end check's tolerance
    assert record["macs_after"] < record["macs_before"]
    files = glob.glob(str(out / "save" / "latency_cpu-2threads-b1-1s-*"))
    (path,) = files
    cache = __import__("json").load(open(path))
    assert set(cache) == {
        "current_ratio",
        "table",
        "fraction",
        "selection_table",
        "measured_ratio",
        "target",  # a decision is reused only for its own target
    }
    # After removed layers (depth is on for latency targets) the groups
    # of the shallower model are a subset of the table's.
    assert {gid for gid, _, _ in record["groups"]} <= set(
        cache["table"]["groups"]
    )
    assert (
        record["depth"]
        == [r["depth"] for r in record["mixes"] if r["chosen"]][0]
    )
    log = open(hparams["train_log"]).read()
    assert "target 20% fewer latency than unpruned" in log
    assert "latency (cpu, 2 threads, batch 1, 1 s of audio" in log

    # The stage again, from the file: same removals, no timing.
    again, hparams2, datasets2 = build(
        "CTC", "train_pruned.yaml", dict(o, output_folder=str(tmp_path / "b"))
    )
    twin = hparams2["pruner"]
    twin.latency = pruner.latency
    os.makedirs(tmp_path / "b" / "save", exist_ok=True)
    shutil.copy(path, tmp_path / "b" / "save")

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again")

    twin.latency.timer = no_timing
    fit(again, hparams2, datasets2)
    assert twin.plan.to_dict()["steps"] == pruner.plan.to_dict()["steps"]
