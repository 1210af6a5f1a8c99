"""Selection of channels under a budget, on a small CRDNN."""

import copy
import json
import os

import pytest
import speechbrain as sb
import torch
import torch.distributed as dist
from hyperpyyaml import load_hyperpyyaml
from tiny_task import (
    build_modules,
    make_batches,
    make_loss_fn,
    make_tiny_ctc_task,
    run_forward,
)

from speechbrain_prune.costs import count_macs, count_params, group_costs
from speechbrain_prune.costs.latency import (
    LatencyModel,
    build_latency_table,
    load_latency_table,
)
from speechbrain_prune.costs.latency import (
    main as latency_main,
)
from speechbrain_prune.graph import discover_groups
from speechbrain_prune.scorers import ScoreError, TaylorScorer
from speechbrain_prune.selection import (
    SelectionError,
    Selector,
    depth_candidates,
    depth_scores,
    removal_steps,
    select,
    select_depth,
)
from speechbrain_prune.surgery import apply_removals


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scored():
    """A trained tiny CRDNN, its groups, Taylor scores and costs."""
    modules, batches, loss_fn = make_tiny_ctc_task(0, "lstm", n_batches=2)
    run = run_forward(batches[0])
    groups = discover_groups(modules, run)
    scores = TaylorScorer(n_batches=2, progress=False).score(
        modules, groups, batches, loss_fn
    )
    costs = group_costs(modules, groups, run)
    return modules, groups, run, scores, costs


def pruned_macs(modules, groups, run, removed):
    clone, g = copy.deepcopy(modules), copy.deepcopy(groups)
    apply_removals(clone, g, removed)
    return count_macs(clone, run=run), clone


def granularity(selector, modules, groups, costs, base):
    """The most one removal step (``round_to`` channels) can save."""
    worst = 0
    for gid, steps in selector.candidates(modules, groups).items():
        sizes = [b - a for a, b in zip([0] + steps, steps)]
        worst = max(worst, max(sizes) * costs[gid]["macs"])
    return worst / base


@pytest.mark.parametrize("round_to", [1, 4])
@pytest.mark.parametrize("target", [0.2, 0.5])
def test_mac_target_is_met_within_the_rounding(scored, target, round_to):
    modules, groups, run, scores, costs = scored
    base = count_macs(modules, run=run)
    selector = Selector(target=target, round_to=round_to)
    removed = selector.select(modules, groups, scores, run=run, costs=costs)
    macs, _ = pruned_macs(modules, groups, run, removed)
    achieved = 1 - macs / base
    assert achieved == pytest.approx(selector.report["achieved"])
    step = granularity(selector, modules, groups, costs, base)
    assert target <= achieved <= target + step, (achieved, step)
    for gid, r in removed.items():
        kept = groups[gid].size - len(r)
        assert kept % round_to == 0 and kept >= 1


def test_uniform_mode(scored):
    modules, groups, run, scores, costs = scored
    base = count_macs(modules, run=run)
    selector = Selector(target=0.4, mode="uniform")
    removed = selector.select(modules, groups, scores, run=run, costs=costs)
    macs, _ = pruned_macs(modules, groups, run, removed)
    assert 1 - macs / base >= 0.4
    fractions = [len(removed.get(g.id, [])) / g.size for g in groups.prunable()]
    assert max(fractions) - min(fractions) <= 1 / 6 + 1e-9
    # The least important channels of each group go.
    for gid, r in removed.items():
        worst = torch.argsort(scores[gid])[: len(r)].sort().values
        assert torch.equal(r, worst)


def test_params_target(scored):
    modules, groups, run, scores, costs = scored
    selector = Selector(target=0.3, target_type="params")
    removed = selector.select(modules, groups, scores, run=run, costs=costs)
    _, clone = pruned_macs(modules, groups, run, removed)
    assert 1 - count_params(clone) / count_params(modules) >= 0.3


def test_layer_ratio_target(scored):
    modules, groups, run, scores, costs = scored
    removed = Selector(target=0.5, target_type="layer_ratio").select(
        modules, groups, scores
    )
    for g in groups.prunable():
        assert abs(len(removed[g.id]) - 0.5 * g.size) <= 0.5
    per_layer = Selector(
        target={"*.RNN.*": 0.4, "*.DNN.*": 0.2}, target_type="layer_ratio"
    ).select(modules, groups, scores)
    assert set(per_layer) == {
        "model.RNN.layer0",
        "model.RNN.layer1",
        "model.DNN.block_0.linear",
        "model.DNN.block_1.linear",
    }
    assert len(per_layer["model.RNN.layer0"]) == 3  # round(0.4 * 7)


def test_constraints(scored):
    modules, groups, run, scores, costs = scored
    selector = Selector(
        target=0.25,
        min_keep=3,
        min_keep_fraction=0.6,
        protect=["*.CNN.block_0.*"],
    )
    removed = selector.select(modules, groups, scores, run=run, costs=costs)
    assert not any("block_0.conv" in gid for gid in removed)
    for gid, r in removed.items():
        kept = groups[gid].size - len(r)
        assert kept >= 3 and kept >= 0.6 * groups[gid].size
    assert removal_steps(9, min_keep=2, round_to=4) == [1, 5]
    assert removal_steps(4, round_to=8) == []


def test_protect_keeps_every_shape_of_a_module(scored):
    modules, groups, run, scores, costs = scored
    # "output" reads the last DNN group: protecting it keeps that group.
    selector = Selector(target=0.2, protect=["output", "model.RNN"])
    removed = selector.select(modules, groups, scores, run=run, costs=costs)
    for gid in removed:
        assert "RNN" not in gid and gid != "model.DNN.block_1.linear"
    assert "model.CNN.block_1.conv_2" not in removed  # the RNN reads it


def test_cost_aware_removes_less_importance():
    # Group "0" channels cost 10x those of group "1" and matter twice as
    # much: a cost-aware ranking removes "0"'s and loses less importance.
    model = sb.nnet.containers.Sequential(
        sb.nnet.linear.Linear(n_neurons=8, input_size=80),
        sb.nnet.linear.Linear(n_neurons=8, input_size=8),
        sb.nnet.linear.Linear(n_neurons=2, input_size=8),
    )
    x = torch.rand(1, 10, 80)
    groups = discover_groups(model, x)
    scores = {"0": torch.full((8,), 2.0), "1": torch.full((8,), 1.0)}

    def lost(cost_aware):
        removed = Selector(target=0.3, cost_aware=cost_aware).select(
            model, groups, scores, run=x
        )
        return sum(float(scores[g][r].sum()) for g, r in removed.items())

    assert lost(True) < lost(False)


def test_normalization_balances_groups(scored):
    modules, groups, run, scores, costs = scored
    scaled = dict(scores)
    scaled["model.CNN.block_0.conv_2"] = (
        scores["model.CNN.block_0.conv_2"] * 1e6
    )
    kwargs = dict(target=0.3, cost_aware=False, round_to=1)
    raw = Selector(**kwargs).select(
        modules, groups, scaled, run=run, costs=costs
    )
    norm = Selector(normalization="max", **kwargs).select(
        modules, groups, scaled, run=run, costs=costs
    )
    assert "model.CNN.block_0.conv_2" not in raw
    assert "model.CNN.block_0.conv_2" in norm


def test_ties_are_broken_by_the_seed(scored):
    modules, groups, run, _, costs = scored
    flat = {g.id: torch.ones(g.size) for g in groups.prunable()}
    plans = [
        Selector(target=0.3, seed=s).select(
            modules, groups, flat, run=run, costs=costs
        )
        for s in (0, 0, 1)
    ]

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert same(plans[0], plans[1])
    assert not same(plans[0], plans[2])


def test_functional_select_without_the_model(scored):
    modules, groups, run, scores, costs = scored
    base = count_macs(modules, run=run)
    removed = select(groups, scores, costs, target=0.3, base_macs=base)
    estimate = sum(len(r) * costs[g]["macs"] for g, r in removed.items())
    assert estimate >= 0.3 * base
    exact = select(groups, scores, costs, target=0.3, root=modules, run=run)
    macs, _ = pruned_macs(modules, groups, run, exact)
    assert 1 - macs / base >= 0.3


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(target=1.0), "`target`"),
        (dict(target=0.0), "`target`"),
        (dict(target=-0.2), "`target`"),
        (dict(target="half"), "`target`"),
        (dict(target_type="flops"), "`target_type`"),
        (dict(normalization="z"), "`normalization`"),
        (dict(mode="random"), "`mode`"),
        (dict(round_to=0), "`round_to`"),
        (dict(min_keep=0), "`min_keep`"),
        (dict(min_keep_fraction=1.0), "`min_keep_fraction`"),
        (dict(target_type="latency"), "`latency_table`"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, key):
    with pytest.raises(SelectionError, match=key):
        Selector(**kwargs)


def test_errors_before_any_scoring():
    modules, batches, loss_fn = make_tiny_ctc_task(0, "lstm", n_batches=1)
    run = run_forward(batches[0])
    groups = discover_groups(modules, run)
    with pytest.raises(SelectionError, match="`protect` pattern 'enc.*'"):
        Selector(protect=["enc.*"]).check(modules, groups, run)
    with pytest.raises(SelectionError, match="`target`.*at most"):
        Selector(target=0.9, min_keep_fraction=0.5).check(modules, groups, run)
    with pytest.raises(SelectionError, match="`target` pattern"):
        Selector(target={"*.GRU*": 0.3}, target_type="layer_ratio").check(
            modules, groups, run
        )
    best = Selector(target=0.5, round_to=4).check(modules, groups, run)
    assert 0.5 <= best < 1


def test_bad_scores_stop_the_selection(scored):
    modules, groups, run, scores, costs = scored
    bad = dict(scores)
    bad["model.RNN.layer1"] = scores["model.RNN.layer1"].clone()
    bad["model.RNN.layer1"][2] = float("nan")
    with pytest.raises(ScoreError, match="model.RNN.layer1: .*channel 2"):
        Selector().select(modules, groups, bad, run=run, costs=costs)
    missing = {k: v for k, v in scores.items() if "RNN" not in k}
    with pytest.raises(SelectionError, match="No score for group"):
        Selector().select(modules, groups, missing, run=run, costs=costs)


def test_selector_from_yaml(scored):
    modules, groups, run, scores, costs = scored
    hparams = load_hyperpyyaml(
        """
        pruning_selector: !new:speechbrain_prune.selection.Selector
            target: 0.25
            normalization: l2
            round_to: 2
            protect: ["*.DNN.*"]
        """
    )
    selector = hparams["pruning_selector"]
    removed = selector.select(modules, groups, scores, run=run, costs=costs)
    assert removed and not any("DNN" in g for g in removed)
    assert selector.report["achieved"] >= 0.25


def mac_seconds(model, run, repeats=1, warmup=0):
    """A deterministic stand-in for a timer: 1 ns per MAC."""
    return 1e-9 * count_macs(model, run=run)


def test_latency_table_measured_smoke():
    """Real timing: only what holds under any machine load is asserted."""
    modules = build_modules(0, "lstm").eval()
    x = make_batches(1)[0][0][:1]
    run = run_forward((x,))
    groups = discover_groups(modules, run)
    table = build_latency_table(
        modules, groups, run, fractions=(0.5,), repeats=2, warmup=1, rounds=1
    )
    assert set(table["groups"]) == {g.id for g in groups.prunable()}
    assert set(table["depth"]) == {"model.RNN:1", "model.DNN.block_1"}
    assert table["base_seconds"] > 0
    for gid, entry in table["groups"].items():
        assert entry["widths"][-1] == groups[gid].size
        assert entry["widths"] == sorted(entry["widths"])
        assert len(entry["seconds"]) == len(entry["widths"])
        assert all(s > 0 for s in entry["seconds"])
    assert all(s > 0 for s in table["depth"].values())


def test_latency_table_and_cost():
    """Selection against a latency table built with a deterministic cost."""
    modules = build_modules(0, "lstm").eval()
    x = make_batches(1)[0][0][:1]
    run = run_forward((x,))
    groups = discover_groups(modules, run)
    table = build_latency_table(
        modules, groups, run, fractions=(0.5,), rounds=1, measure=mac_seconds
    )
    assert table["base_seconds"] == pytest.approx(mac_seconds(modules, run))
    assert set(table["depth"]) == {"model.RNN:1", "model.DNN.block_1"}
    latency = LatencyModel(table)
    full = {g.id: g.size for g in groups.prunable()}
    assert latency.estimate(full) == pytest.approx(table["base_seconds"])
    scores = {g.id: torch.rand(g.size) for g in groups.prunable()}
    selector = Selector(target=0.2, target_type="latency", latency_table=table)
    removed = selector.select(modules, groups, scores, run=run)
    assert selector.report["achieved"] >= 0.2
    widths = {g: full[g] - len(r) for g, r in removed.items()}
    assert latency.estimate(widths) <= 0.8 * latency.base + 1e-12
    # MAC target, latency ranking.
    mixed = Selector(target=0.2, cost="latency", latency_table=table)
    mixed.select(modules, groups, scores, run=run)
    assert mixed.report["achieved"] >= 0.2
    # A device where narrowing saves no time (measured on GPUs for RNNs):
    # the MAC target is still met, by the least important channels.
    flat = copy.deepcopy(table)
    for entry in flat["groups"].values():
        entry["seconds"] = [flat["base_seconds"]] * len(entry["seconds"])
    still = Selector(target=0.2, cost="latency", latency_table=flat)
    still.select(modules, groups, scores, run=run)
    assert still.report["achieved"] >= 0.2


def test_latency_command(tmp_path):
    yaml_path = tmp_path / "hparams.yaml"
    yaml_path.write_text(
        """
        enc: !new:speechbrain.lobes.models.CRDNN.CRDNN
            input_size: 20
            cnn_blocks: 1
            cnn_channels: [4]
            rnn_layers: 2
            rnn_neurons: 6
            dnn_blocks: 1
            dnn_neurons: 8
        ctc_lin: !new:speechbrain.nnet.linear.Linear
            input_size: 8
            n_neurons: 5
        modules:
            enc: !ref <enc>
            ctc_lin: !ref <ctc_lin>
        """
    )
    out = latency_main(
        [
            str(yaml_path),
            "--modules",
            "enc",
            "ctc_lin",
            "--input-shape",
            "1",
            "30",
            "20",
            "--fractions",
            "0.5",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "1",
        ]
    )
    assert out == os.path.join(str(tmp_path), "latency_cpu.json")
    table = load_latency_table(out)
    assert "enc.RNN.layer0" in table["groups"]
    assert table["modules"] == ["enc", "ctc_lin"]
    json.dumps(table)


def test_depth_candidates_scores_and_selection():
    modules, batches, loss_fn = make_tiny_ctc_task(0, "lstm", n_batches=1)
    run = run_forward(batches[0])
    cands = depth_candidates(modules)
    assert [c.name for c in cands] == ["model.RNN:1", "model.DNN.block_1"]
    state = {k: v.clone() for k, v in modules.state_dict().items()}
    scores = depth_scores(modules, cands, batches, loss_fn)
    assert all(s > 0 for s in scores.values())
    after = modules.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
    chosen = select_depth(modules, cands, scores, run=run, target=0.01)
    assert [c.name for c in chosen] == ["model.RNN:1"]  # the only big one
    base = count_macs(modules, run=run)
    clone = copy.deepcopy(modules)
    for c in chosen:
        c.apply(clone)
    assert 1 - count_macs(clone, run=run) / base >= 0.01
    with pytest.raises(SelectionError, match="`target`"):
        select_depth(modules, cands, scores, run=run, target=0.9)


# Two processes ---------------------------------------------------------------
def _rank_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
    )
    try:
        modules, _, _ = make_tiny_ctc_task(0, "lstm", train_steps=0)
        loss_fn = make_loss_fn(modules)
        reference = make_batches(1, seed=50)[0]  # the same on every rank
        run = run_forward(reference)
        groups = discover_groups(modules, run)
        batches = make_batches(2, seed=10 + rank)  # a rank's own data
        scorer = TaylorScorer(n_batches=2, progress=False)
        local = scorer.compute(modules, groups.prunable(), batches, loss_fn)
        scores = scorer.score(modules, groups, batches, loss_fn)
        removed = Selector(target=0.3).select(modules, groups, scores, run=run)
        torch.save(
            {"local": local, "scores": scores, "removed": removed},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_ranks_with_different_batches_select_the_same(tmp_path):
    torch.multiprocessing.spawn(
        _rank_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    gid = "model.RNN.layer0"
    assert not torch.allclose(r0["local"][gid], r1["local"][gid])
    for key in r0["scores"]:
        assert torch.equal(r0["scores"][key], r1["scores"][key])
        mean = (r0["local"][key] + r1["local"][key]).double() / 2
        assert torch.allclose(r0["scores"][key], mean)
    assert r0["removed"].keys() == r1["removed"].keys()
    assert r0["removed"]
    for key in r0["removed"]:
        assert torch.equal(r0["removed"][key], r1["removed"][key])


def test_a_group_at_its_floor_costs_nothing_more():
    """A group already at the fewest channels its layers keep (a conv that
    SpeechBrain squeezes at one channel keeps 2) saves nothing per
    channel: the cost helpers say 0 instead of removing below the floor
    (which failed the Selector's unit costs whenever a step reached it)."""
    from conftest import build_crdnn

    from speechbrain_prune.selection.meter import param_cost

    model = build_crdnn(cnn_channels=[2, 8])
    x = torch.rand(2, 12, 20)
    groups = discover_groups(model, x)
    group = groups["CNN.block_0.conv_1"]
    assert (group.size, group.min_size) == (2, 2)
    assert param_cost(model, group) == 0
    assert group_costs(model, groups, x)[group.id] == {"macs": 0, "params": 0}
