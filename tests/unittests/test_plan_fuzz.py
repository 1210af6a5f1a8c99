"""Plan fuzzing: a corrupted plan is refused with the model untouched, or
applied exactly as a fresh replay of the same plan.

The plan is real: two pruning stages of a small CRDNN (LSTM, projection,
3 RNN layers, 3 DNN blocks) with an RNN layer and a DNN block removed in
between. Its mutations: truncations of its YAML and JSON text, every key
deleted or given a wrong type (a seeded sample), out-of-range, negative,
repeated and non-integer indices, members missing, steps repeated or
reordered, and foreign models (GRU, LiGRU, other sizes).
"""

import copy
import json
import math
import random

import pytest
import torch
from conftest import build_crdnn, random_removals

from speechbrain_prune.graph import discover_groups
from speechbrain_prune.handlers.linear import LinearHandler
from speechbrain_prune.plan import PlanError, PlanMismatchError, PruningPlan
from speechbrain_prune.surgery import SliceLedger, apply_removals, remove_block

KW = dict(rnn_layers=3, dnn_blocks=3, projection_dim=6)
X = torch.rand(2, 12, 20)


def build(rnn="lstm", **kw):
    return build_crdnn(seed=5, rnn=rnn, **{**KW, **kw})


@pytest.fixture(scope="module")
def recorded():
    """(plan data, the model it was recorded on)."""
    model = build_crdnn(seed=0, rnn="lstm", **KW)
    plan = PruningPlan()
    plan.prune(model, discover_groups(model, X), _removals(model, 0))
    plan.remove_rnn_layer(model, "RNN", 2)
    plan.remove_block(model, "DNN.block_1")
    plan.prune(model, discover_groups(model, X), _removals(model, 1))
    return plan.to_dict(), model


def _removals(model, seed):
    return random_removals(discover_groups(model, X), 0.3, seed=seed)


def fingerprint(model):
    """Everything a refused plan must leave as it was."""
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(n, type(m)) for n, m in model.named_modules()],
        [id(p) for p in model.parameters()],
    )


def assert_same(model, before):
    state, types, ids = fingerprint(model)
    assert types == before[1]
    assert ids == before[2]
    assert state.keys() == before[0].keys()
    for k, v in state.items():
        assert torch.equal(v, before[0][k]), k


class Target:
    """A model that plans are tried on; rebuilt after a plan applies."""

    def __init__(self, rnn="lstm", **kw):
        self.rnn, self.kw = rnn, kw
        self.counts = {"refused": 0, "applied": 0}
        self._fresh()

    def _fresh(self):
        self.model = build(self.rnn, **self.kw)
        self.before = fingerprint(self.model)

    def attempt(self, load):
        """``load()`` gives a PruningPlan (parsing included); applies it."""
        try:
            load().apply(self.model)
        except PlanError as e:
            assert_same(self.model, self.before)
            self.counts["refused"] += 1
            return str(e)
        twin = build(self.rnn, **self.kw)
        load().apply(twin)
        assert [type(m) for m in twin.modules()] == [
            type(m) for m in self.model.modules()
        ]
        twin_state = twin.state_dict()
        for k, v in self.model.state_dict().items():
            assert torch.equal(v, twin_state[k]), k
        out = self.model(X)
        assert out.shape[:2] == X.shape[:2] and torch.isfinite(out).all()
        self.counts["applied"] += 1
        self._fresh()
        return None


def test_the_recorded_plan_replays_exactly(recorded):
    data, model = recorded
    fresh = build()
    PruningPlan.from_dict(copy.deepcopy(data)).apply(fresh)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(fresh(X), model(X))
    step = data["steps"][0]["groups"][-1]
    assert step["module_types"] == {
        "DNN.block_1.linear": "speechbrain.nnet.linear.Linear",
        "DNN.block_1.norm": "speechbrain.nnet.normalization.BatchNorm1d",
        "DNN.block_2.linear": "speechbrain.nnet.linear.Linear",
    }
    assert data["steps"][1]["module_type"] == "speechbrain.nnet.RNN.LSTM"


def test_truncated_yaml_and_json(recorded, tmp_path):
    data, _ = recorded
    text = PruningPlan.from_dict(data).to_yaml()
    # A seeded sample of the line ends (where truncated YAML still parses,
    # as a shorter plan or a broken one) and of the other points.
    rng = random.Random(0)
    ends = [i for i, c in enumerate(text) if c == "\n"]
    points = set(rng.sample(ends, 160))
    points |= set(rng.sample(range(len(text)), 240))
    target = Target()
    for k in sorted(points):
        target.attempt(lambda: PruningPlan.from_yaml(text[:k]))
    assert target.counts["refused"] > 0.9 * len(points)
    assert target.counts["applied"] >= 2  # whole steps survive some cuts
    # JSON: every 8th truncation point.
    js = json.dumps(data, indent=1)
    path = tmp_path / "plan.json"
    for k in range(0, len(js), 8):
        path.write_text(js[:k])
        target.attempt(lambda: PruningPlan.load(path))
    path.write_text(js)
    assert target.attempt(lambda: PruningPlan.load(path)) is None


def _paths(node, prefix=()):
    """Every (container path, key) of the plan's data."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield prefix, key
        if isinstance(value, (dict, list)):
            yield from _paths(value, prefix + (key,))


def _at(data, path):
    for key in path:
        data = data[key]
    return data


WRONG = [None, "x", 1.5, -1, True, [], {}, 10**6]


def test_every_key_deleted_or_mistyped(recorded):
    data, _ = recorded
    cases = [(p, k, "delete") for p, k in _paths(data)]
    cases += [(p, k, w) for p, k in _paths(data) for w in range(len(WRONG))]
    sample = random.Random(1).sample(cases, 300)
    target = Target()
    for path, key, how in sample:
        mutated = copy.deepcopy(data)
        parent = _at(mutated, path)
        if how == "delete":
            del parent[key]
        else:
            parent[key] = WRONG[how]
        target.attempt(lambda: PruningPlan.from_dict(mutated))
    assert target.counts["refused"] > 240
    assert target.counts["applied"] > 0  # e.g. a group renamed


def _group(data, step, gid):
    (entry,) = [g for g in data["steps"][step]["groups"] if g["id"] == gid]
    return entry


def _set_removed(entry, removed):
    entry["removed"] = removed
    entry["size_after"] = entry["size"] - len(removed)


def _drop_member(entry, module, types=True):
    entry["members"] = [m for m in entry["members"] if m["module"] != module]
    if types:
        entry["module_types"].pop(module)


def _resize(entry, delta):
    entry["size"] += delta
    entry["size_after"] += delta
    for m in entry["members"]:
        if "layout" in m:
            m["layout"]["size"] += delta


RNN0, CONV = "RNN.layer0", "CNN.block_1.conv_1"
# name, mutation of the plan data, a fragment of the refusal.
MUST_REFUSE = [
    (
        "non-integer index",
        lambda d: _set_removed(_group(d, 0, RNN0), [1.5]),
        "key 'removed'",
    ),
    (
        "negative index",
        lambda d: _set_removed(_group(d, 0, RNN0), [-1]),
        "key 'removed'",
    ),
    (
        "index = size",
        lambda d: _set_removed(_group(d, 0, RNN0), [7]),
        "key 'removed'",
    ),
    (
        "repeated index",
        lambda d: _set_removed(_group(d, 3, RNN0), [0, 0]),
        "repeats",
    ),
    (
        "index as text",
        lambda d: _set_removed(_group(d, 0, RNN0), ["1"]),
        "key 'removed'",
    ),
    (
        "size_after off by one",
        lambda d: _group(d, 3, CONV).update(size_after=3),
        "key 'size_after'",
    ),
    (
        "layer not an integer",
        lambda d: d["steps"][1].update(layer=1.5),
        "key 'layer'",
    ),
    (
        "layer out of range",
        lambda d: d["steps"][1].update(layer=7),
        "no layer 7",
    ),
    (
        "slot missing",
        lambda d: _group(d, 0, CONV)["members"][0].pop("slot"),
        "missing key 'slot'",
    ),
    (
        "unknown slot",
        lambda d: _group(d, 0, CONV)["members"][0].update(slot="rows"),
        "slot 'rows'",
    ),
    (
        "norm entry lost",
        lambda d: _drop_member(
            _group(d, 0, CONV), "CNN.block_1.norm_1", types=False
        ),
        "the group's entry is incomplete",
    ),
    (
        "consumer entry lost",
        lambda d: _drop_member(
            _group(d, 0, CONV), "CNN.block_1.conv_2", types=False
        ),
        "at least one consumer",
    ),
    (
        "consumer entry and its type lost",
        lambda d: _drop_member(_group(d, 0, CONV), "CNN.block_1.conv_2"),
        "at least one consumer",
    ),
    ("unknown op", lambda d: d["steps"][2].update(op="prune"), "key 'op'"),
    (
        "unknown key",
        lambda d: _group(d, 0, CONV).update(extra=1),
        "unknown key 'extra'",
    ),
    ("steps not a list", lambda d: d.update(steps={}), "key 'steps'"),
    (
        "group repeated in a step",
        lambda d: d["steps"][0]["groups"].append(
            copy.deepcopy(_group(d, 0, CONV))
        ),
        "repeated",
    ),
    ("step repeated", lambda d: d["steps"].insert(1, d["steps"][0]), "expects"),
    ("steps reordered", lambda d: d["steps"].reverse(), "plan step 0"),
    # Consistent in itself, wrong for the model at the last step only:
    # steps 0-2 have been replayed on the shape-only copy by then.
    (
        "last step sized for another model",
        lambda d: _resize(_group(d, 3, "DNN.block_0.linear"), 1),
        "expects",
    ),
    (
        "projection to one unit",
        lambda d: _set_removed(_group(d, 3, "projection.linear"), [0, 1, 2]),
        "at least 2",
    ),
    (
        "layer type changed",
        lambda d: d["steps"][1].update(module_type="speechbrain.nnet.RNN.GRU"),
        "made on a",
    ),
]


@pytest.mark.parametrize(
    "mutate, fragment",
    [case[1:] for case in MUST_REFUSE],
    ids=[case[0] for case in MUST_REFUSE],
)
def test_corruptions_that_must_be_refused(recorded, mutate, fragment):
    data = copy.deepcopy(recorded[0])
    mutate(data)
    target = Target()
    message = target.attempt(lambda: PruningPlan.from_dict(data))
    assert message is not None, "the corrupted plan was applied"
    assert fragment in message


@pytest.mark.parametrize(
    "rnn, kw, fragment",
    [
        ("gru", {}, "made on a speechbrain.nnet.RNN.LSTM"),
        ("ligru", {}, "made on a speechbrain.nnet.RNN.LSTM"),
        ("lstm", {"cnn_channels": [6, 10]}, "expects 8"),
        ("lstm", {"rnn_neurons": 8}, "expects 7"),
        ("lstm", {"projection_dim": 5}, "expects 6"),
        ("lstm", {"dnn_blocks": 2}, "no module 'DNN.block_2.linear'"),
        ("lstm", {"rnn_layers": 2}, "no slot 'input.2'"),
        ("lstm", {"projection_dim": -1}, "no module 'projection.linear'"),
    ],
)
def test_foreign_models_are_refused_untouched(recorded, rnn, kw, fragment):
    target = Target(rnn, **kw)
    message = target.attempt(lambda: PruningPlan.from_dict(recorded[0]))
    assert message is not None and fragment in message


def test_accepted_mutations_apply_like_a_fresh_replay(recorded):
    data = copy.deepcopy(recorded[0])
    del data["speechbrain_prune_version"]
    for step in data["steps"]:
        step.pop("module_type", None)
        for entry in step.get("groups", []):
            entry.pop("module_types")  # a plan of an earlier version
            entry["removed"].reverse()  # order does not matter
    target = Target()
    assert target.attempt(lambda: PruningPlan.from_dict(data)) is None
    fresh = build()
    PruningPlan.from_dict(data).apply(fresh)
    fresh.load_state_dict(recorded[1].state_dict(), strict=True)


def test_a_surgery_that_fails_midway_is_undone(recorded, monkeypatch):
    """The dry run passes; the real surgery fails at its 10th Linear slice
    (in step 3, after steps 0-2 were applied):
    the model, its parameter objects included, and the ledger are restored.
    """
    original = LinearHandler.prune
    calls = []

    def failing(self, module, member, keep, ledger):
        if module.w.weight.device.type != "meta":
            calls.append(member.module)
            if len(calls) == 10:
                raise RuntimeError("injected failure")
        return original(self, module, member, keep, ledger)

    monkeypatch.setattr(LinearHandler, "prune", failing)
    model = build()
    before = fingerprint(model)
    ledger = SliceLedger()
    with pytest.raises(PlanMismatchError, match="plan step 3.*injected"):
        PruningPlan.from_dict(recorded[0]).apply(model, ledger)
    assert len(calls) == 10
    assert_same(model, before)
    assert len(ledger) == 0
    monkeypatch.setattr(LinearHandler, "prune", original)
    PruningPlan.from_dict(recorded[0]).apply(model)
    model.load_state_dict(recorded[1].state_dict(), strict=True)


def test_norm_over_the_group_keeps_two_channels():
    model = build()
    groups = discover_groups(model, X)
    assert groups["projection.linear"].min_size == 2
    assert groups["CNN.block_1.conv_1"].min_size == 1  # (freq, C) norm
    before = fingerprint(model)
    with pytest.raises(ValueError, match="fewer than 2"):
        apply_removals(model, groups, {"projection.linear": list(range(5))})
    assert_same(model, before)


def test_remove_block_checks_before_it_removes():
    # One DNN block whose widths agree (2 x 7 in, 14 out): the last one.
    model = build_crdnn(dnn_blocks=1, dnn_neurons=14)
    before = fingerprint(model)
    with pytest.raises(ValueError, match="last DNN block"):
        remove_block(model, "DNN.block_0")
    assert_same(model, before)
    plan = PruningPlan()
    with pytest.raises(ValueError, match="last DNN block"):
        plan.remove_block(model, "DNN.block_0")
    assert len(plan) == 0 and not math.isnan(model(X).sum().item())
