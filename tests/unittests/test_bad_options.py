"""Bad configurations are refused at once, with an error naming the key.

One row per bad configuration: ``(name, build, error type, key)``; calling
``build()`` must raise ``error`` and its message must contain ``key``. Add
rows for new options (schedule, checkpointer, ...) to ``ROWS``.
"""

import math
import tempfile

import pytest
import torch
from conftest import make_crdnn

from speechbrain_prune import LatencySetup
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.plan import PlanError, PruningPlan
from speechbrain_prune.scorers import (
    AblationScorer,
    ActivationScorer,
    FisherScorer,
    MagnitudeScorer,
    RandomScorer,
    TaylorScorer,
    get_scorer,
)
from speechbrain_prune.selection import SelectionError, Selector
from speechbrain_prune.training import (
    Pruner,
    PruningCheckpointer,
    PruningSchedule,
)

X = torch.rand(2, 12, 20)


def _plan(**step):
    """A plan of one RNN-layer step, with ``step``'s keys changed."""
    base = {"op": "rnn_layer", "module": "RNN", "layer": 1}
    base.update(step)
    return {"steps": [{k: v for k, v in base.items() if v is not ...}]}


def _channels(**entry):
    """A plan of one channels step, with the group's keys changed."""
    group = {
        "id": "RNN.layer0",
        "size": 7,
        "members": [
            {"module": "RNN", "role": "producer", "slot": "hidden.0"},
            {
                "module": "RNN",
                "role": "consumer",
                "slot": "input.1",
                "layout": {"size": 7, "copies": 2},
            },
        ],
        "removed": [0, 2],
        "size_after": 5,
    }
    group.update(entry)
    group = {k: v for k, v in group.items() if v is not ...}
    return {"steps": [{"op": "channels", "groups": [group]}]}


def _protect_nothing():
    model = make_crdnn()
    Selector(protect=["model.nope*"]).check(model, discover_groups(model, X))


ROWS = [
    # Scorers ---------------------------------------------------------------
    (
        "n_batches fractional",
        lambda: TaylorScorer(n_batches=2.7),
        ValueError,
        "n_batches",
    ),
    (
        "n_batches zero",
        lambda: FisherScorer(n_batches=0),
        ValueError,
        "n_batches",
    ),
    (
        "n_batches text",
        lambda: ActivationScorer(n_batches="4"),
        ValueError,
        "n_batches",
    ),
    (
        "n_batches boolean",
        lambda: AblationScorer(n_batches=True),
        ValueError,
        "n_batches",
    ),
    (
        "n_batches none",
        lambda: TaylorScorer(n_batches=None),
        ValueError,
        "n_batches",
    ),
    (
        "n_batches of a data-free scorer",
        lambda: MagnitudeScorer(n_batches=2.7),
        ValueError,
        "n_batches",
    ),
    (
        "aggregate unknown",
        lambda: TaylorScorer(aggregate="median"),
        ValueError,
        "aggregate",
    ),
    (
        "eval_mode text",
        lambda: TaylorScorer(eval_mode="no"),
        ValueError,
        "eval_mode",
    ),
    (
        "progress number",
        lambda: FisherScorer(progress=2),
        ValueError,
        "progress",
    ),
    (
        "taylor variant",
        lambda: TaylorScorer(variant="cubed"),
        ValueError,
        "variant",
    ),
    ("fisher mode", lambda: FisherScorer(mode="full"), ValueError, "mode"),
    (
        "fisher first_order text",
        lambda: FisherScorer(first_order="yes"),
        ValueError,
        "first_order",
    ),
    (
        "ablation seed fractional",
        lambda: AblationScorer(seed=1.5),
        ValueError,
        "seed",
    ),
    (
        "ablation signed text",
        lambda: AblationScorer(signed="no"),
        ValueError,
        "signed",
    ),
    (
        "activation statistic",
        lambda: ActivationScorer(statistic="max"),
        ValueError,
        "statistic",
    ),
    (
        "activation threshold negative",
        lambda: ActivationScorer(zero_threshold=-0.1),
        ValueError,
        "zero_threshold",
    ),
    (
        "activation threshold nan",
        lambda: ActivationScorer(zero_threshold=math.nan),
        ValueError,
        "zero_threshold",
    ),
    ("magnitude norm 3", lambda: MagnitudeScorer(norm=3), ValueError, "norm"),
    (
        "magnitude norm boolean",
        lambda: MagnitudeScorer(norm=True),
        ValueError,
        "norm",
    ),
    (
        "magnitude producer_only text",
        lambda: MagnitudeScorer(producer_only="true"),
        ValueError,
        "producer_only",
    ),
    ("random seed text", lambda: RandomScorer(seed="a"), ValueError, "seed"),
    (
        "random n_batches zero",
        lambda: RandomScorer(n_batches=0),
        ValueError,
        "n_batches",
    ),
    ("scorer name", lambda: get_scorer("tayler"), ValueError, "scorer"),
    # Selection -------------------------------------------------------------
    ("target above 1", lambda: Selector(target=1.5), SelectionError, "target"),
    ("target zero", lambda: Selector(target=0), SelectionError, "target"),
    ("target text", lambda: Selector(target="0.3"), SelectionError, "target"),
    (
        "layer ratio above 1",
        lambda: Selector(target={"*": 1.2}, target_type="layer_ratio"),
        SelectionError,
        "target",
    ),
    (
        "target_type",
        lambda: Selector(target_type="flops"),
        SelectionError,
        "target_type",
    ),
    (
        "normalization",
        lambda: Selector(normalization="z"),
        SelectionError,
        "normalization",
    ),
    ("mode", lambda: Selector(mode="local"), SelectionError, "mode"),
    ("cost", lambda: Selector(cost="time"), SelectionError, "cost"),
    ("min_keep zero", lambda: Selector(min_keep=0), SelectionError, "min_keep"),
    (
        "min_keep fractional",
        lambda: Selector(min_keep=1.5),
        SelectionError,
        "min_keep",
    ),
    (
        "min_keep boolean",
        lambda: Selector(min_keep=True),
        SelectionError,
        "min_keep",
    ),
    (
        "min_keep_fraction 1",
        lambda: Selector(min_keep_fraction=1.0),
        SelectionError,
        "min_keep_fraction",
    ),
    ("round_to zero", lambda: Selector(round_to=0), SelectionError, "round_to"),
    (
        "round_to fractional",
        lambda: Selector(round_to=2.5),
        SelectionError,
        "round_to",
    ),
    (
        "cost_aware text",
        lambda: Selector(cost_aware="no"),
        SelectionError,
        "cost_aware",
    ),
    ("seed fractional", lambda: Selector(seed=0.5), SelectionError, "seed"),
    (
        "protect numbers",
        lambda: Selector(protect=[1]),
        SelectionError,
        "protect",
    ),
    (
        "protect empty pattern",
        lambda: Selector(protect=[""]),
        SelectionError,
        "protect",
    ),
    ("protect matches nothing", _protect_nothing, SelectionError, "protect"),
    (
        "latency without a table",
        lambda: Selector(target_type="latency"),
        SelectionError,
        "latency_table",
    ),
    # Plan contents ---------------------------------------------------------
    (
        "plan not a mapping",
        lambda: PruningPlan.from_dict([1]),
        PlanError,
        "steps",
    ),
    (
        "plan without steps",
        lambda: PruningPlan.from_dict({}),
        PlanError,
        "'steps'",
    ),
    (
        "plan text not YAML",
        lambda: PruningPlan.from_yaml("steps: [1"),
        PlanError,
        "YAML",
    ),
    (
        "plan op unknown",
        lambda: PruningPlan.from_dict(_plan(op="prune")),
        PlanError,
        "'op'",
    ),
    (
        "plan layer fractional",
        lambda: PruningPlan.from_dict(_plan(layer=1.5)),
        PlanError,
        "'layer'",
    ),
    (
        "plan layer text",
        lambda: PruningPlan.from_dict(_plan(layer="1")),
        PlanError,
        "'layer'",
    ),
    (
        "plan module missing",
        lambda: PruningPlan.from_dict(_plan(module=...)),
        PlanError,
        "'module'",
    ),
    (
        "plan removed fractional",
        lambda: PruningPlan.from_dict(_channels(removed=[1.5], size_after=6)),
        PlanError,
        "'removed'",
    ),
    (
        "plan removed out of range",
        lambda: PruningPlan.from_dict(_channels(removed=[7], size_after=6)),
        PlanError,
        "'removed'",
    ),
    (
        "plan removed empty",
        lambda: PruningPlan.from_dict(_channels(removed=[], size_after=7)),
        PlanError,
        "'removed'",
    ),
    (
        "plan size fractional",
        lambda: PruningPlan.from_dict(_channels(size=7.0)),
        PlanError,
        "'size'",
    ),
    (
        "plan size_after inconsistent",
        lambda: PruningPlan.from_dict(_channels(size_after=4)),
        PlanError,
        "'size_after'",
    ),
    (
        "plan members missing",
        lambda: PruningPlan.from_dict(_channels(members=...)),
        PlanError,
        "'members'",
    ),
    (
        "plan module_types incomplete",
        lambda: PruningPlan.from_dict(_channels(module_types={"CNN": "x"})),
        PlanError,
        "'module_types'",
    ),
    # Schedules checked against the run's last epoch (at the start of fit).
    (
        "second stage after the last epoch",
        lambda: PruningSchedule(target=0.3, n_stages=2, every=5).check_within(
            3
        ),
        ValueError,
        "`number_of_epochs`",
    ),
    (
        "iterative schedule past the last epoch",
        lambda: PruningSchedule(target=0.3, n_stages=3, every=2).check_within(
            4
        ),
        ValueError,
        "n_stages=3, every=2",
    ),
    (
        "explicit stage past the last epoch",
        lambda: PruningSchedule(
            stages=[{"epoch": 2, "target": 0.2}, {"epoch": 9, "target": 0.3}]
        ).check_within(4),
        ValueError,
        "stages",
    ),
    # Per-stage measures (checked when the YAML loads).
    (
        "stage target_type unknown",
        lambda: Pruner(
            "magnitude",
            stages=[{"epoch": 2, "target": 0.3, "target_type": "flops"}],
        ),
        ValueError,
        "target_type 'flops'",
    ),
    (
        "latency stage without a latency setup",
        lambda: Pruner(
            "magnitude",
            stages=[
                {"epoch": 2, "target": 0.3, "target_type": "params"},
                {"epoch": 3, "target": 0.5, "target_type": "latency"},
            ],
        ),
        ValueError,
        "`latency:`",
    ),
    (
        "stage target lowered within its measure",
        lambda: Pruner(
            "magnitude",
            stages=[
                {"epoch": 2, "target": 0.3},
                {"epoch": 3, "target": 0.5, "target_type": "macs"},
                {"epoch": 4, "target": 0.2, "target_type": "params"},
            ],
        ),
        ValueError,
        "within one measure (in params)",
    ),
    (
        "round_to table without a latency stage",
        lambda: Pruner(
            "magnitude", target=0.3, selection={"round_to": "table"}
        ),
        ValueError,
        "round_to: table",
    ),
    (
        "selector round_to table without a latency table",
        lambda: Selector(target_type="params", round_to="table").check(
            make_crdnn(), discover_groups(make_crdnn(), X)
        ),
        SelectionError,
        "round_to: table",
    ),
    (
        "mixed-measure stage past the last epoch",
        lambda: PruningSchedule(
            stages=[
                {"epoch": 2, "target": 0.3, "target_type": "params"},
                {"epoch": 5, "target": 0.5, "target_type": "latency"},
            ]
        ).check_within(3),
        ValueError,
        "30% (params) instead of 50% (latency)",
    ),
    (
        "cost latency with a params stage",
        lambda: Pruner(
            "magnitude",
            stages=[
                {"epoch": 2, "target": 0.3},
                {"epoch": 3, "target": 0.4, "target_type": "latency"},
            ],
            selection={"cost": "latency"},
            latency=LatencySetup(),
        ),
        ValueError,
        "stage 1 counts params",
    ),
    (
        "cost latency without a latency stage",
        lambda: Pruner("magnitude", target=0.3, selection={"cost": "latency"}),
        ValueError,
        "remove `cost`",
    ),
    (
        "checkpointer without its pruner",
        lambda: PruningCheckpointer(tempfile.mkdtemp()),
        ValueError,
        "`pruner: !ref <pruner>`",
    ),
]


@pytest.mark.parametrize(
    "build, error, key", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_option_is_refused_naming_the_key(build, error, key):
    with pytest.raises(error) as info:
        build()
    assert key in str(info.value)


def test_the_table_is_large_and_its_names_unique():
    assert len(ROWS) >= 30
    assert len({r[0] for r in ROWS}) == len(ROWS)


def test_good_values_next_to_the_bad_ones_are_accepted():
    """The checks refuse the bad values only."""
    assert TaylorScorer(n_batches=3.0).n_batches == 3
    assert MagnitudeScorer(n_batches=None, norm=2).norm == 2
    assert ActivationScorer(zero_threshold=0).zero_threshold == 0.0
    selector = Selector(min_keep=2, round_to=8, seed=3, cost_aware=False)
    assert (selector.min_keep, selector.round_to) == (2, 8)
    plan = PruningPlan.from_dict(_channels())
    assert len(plan) == 1
    PruningSchedule(target=0.3, n_stages=3, every=2).check_within(5)
    PruningSchedule(target=0.3, start_epoch=10).check_within(3, done=[0])
    # A lower target in another measure is no decrease.
    mixed = Pruner(
        "magnitude",
        stages=[
            {"epoch": 2, "target": 0.5, "target_type": "params"},
            {"epoch": 3, "target": 0.2, "target_type": "latency"},
        ],
        latency=LatencySetup(),
    )
    assert mixed.measures == ["params", "latency"]


def test_protect_as_a_string_is_one_pattern():
    model = make_crdnn()
    groups = discover_groups(model, X)
    selector = Selector(protect="CNN.block_0.*")
    assert selector.protect == ["CNN.block_0.*"]
    cands = selector.candidates(model, groups)
    assert "CNN.block_0.conv_1" not in cands and "RNN.layer0" in cands
