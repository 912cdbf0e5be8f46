"""NetAdapt: width plans, L2 filter selection, residual groups, selection rules, schedule, resume, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import mobilenets
from mobilenets.cli import main
from mobilenets.search.netadapt import STATE_FILE, SearchSettings, choose_width, search, select, step_target
from mobilenets.search.plan import ChannelMap, Layout, Slot, WidthPlan, candidate_widths, kept_channels, narrow
from test_training import make_idx_dir


@pytest.fixture(autouse=True)
def one_thread():
    # Two intra-op threads on a shared 2-core machine wait on each other at every op: 10x slower convs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = mobilenets.create_model(name, num_classes=4, in_chans=1, stem_stride=1, **options)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial affine BN, so a wrong channel shows in the outputs
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.momentum = None  # running stats = the mean over the batches below: activations stay in range
        elif isinstance(m, torch.nn.Linear):  # the default 0.01 init makes logits almost constant
            torch.nn.init.normal_(m.weight, 0, m.in_features**-0.5)
    with torch.no_grad():
        model.train()(torch.randn(16, 1, 32, 32))
    return model.eval()


# --- fakes: latency a function of the plan's MAdds, accuracy of its widths ---------------------------


def plan_madds(plan: WidthPlan, layout: Layout) -> float:
    """MAdds of the convs at a 32x32 input, from the block specs (cheap and exact enough for a fake)."""
    h = 32
    total = 9 * plan.groups[0] * h * h
    for spec in plan.blocks(layout):
        exp = spec.exp_chs if spec.kind == "ir" else spec.in_chs
        total += (spec.in_chs * exp if exp != spec.in_chs else 0) * h * h
        h //= spec.stride
        total += exp * spec.kernel**2 * h * h + exp * spec.out_chs * h * h + 2 * exp * spec.se_chs
    last = plan.groups[-1]
    if plan.final:
        total += last * plan.final * h * h
        last = plan.final
    if plan.features:
        total += last * plan.features
    return total


class FakeLatency:
    def __init__(self, noise: float = 1.0):
        self.noise = noise  # measured = predicted x noise: a table that is off by a constant factor
        self.observed: list[tuple[str, float]] = []

    def predict(self, model):
        return plan_madds(WidthPlan.of(model), Layout.of(model)) / 1e5

    def measure(self, models):
        return {name: self.predict(m) * self.noise for name, m in models.items()}

    def observe(self, name, model, measured_ms, predicted_ms=None):
        self.observed.append((name, measured_ms))

    def report(self):
        return {"entries": 0, "points": len(self.observed)}


class FakeAccuracy:
    """Accuracy grows with log-width, each slot with its own weight: narrowing some costs more than others."""

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = weights or {}
        self.calls = 0

    def score(self, model):
        layout, plan = Layout.of(model), WidthPlan.of(model)
        return 50 + sum(self.weights.get(s.id, 1.0) * math.log(plan.get(s)) for s in layout.slots())

    def finetune(self, model, key):
        self.calls += 1
        return self.score(model)


def _run(tmp_path: Path, name: str = "run", **settings):
    seed = _model("mobilenet_v3_small_minimal_100", width_mult=0.5)
    latency, acc = FakeLatency(), FakeAccuracy({"final": 3.0, "exp9": 0.2})
    options = {"budget": 0.7, "delta": 0.1, **settings}
    state = search(seed, tmp_path / name, latency, acc, SearchSettings(**options))
    return state, latency, acc


# --- width plans ----------------------------------------------------------------------------------


def test_plan_round_trips_and_full_width_narrowing_is_the_identity():
    for name in ("mobilenet_v1_025", "mobilenet_v2_035", "mobilenet_v3_small_075"):
        model = _model(name)
        plan = WidthPlan.of(model)
        assert WidthPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
        same = narrow(model, plan)
        x = torch.randn(2, 1, 32, 32)
        torch.testing.assert_close(same(x), model(x), rtol=0, atol=0)


def test_residual_groups_are_cut_together_and_shortcuts_stay_valid():
    model = _model("mobilenet_v3_large_075")
    layout, plan = Layout.of(model), WidthPlan.of(model)
    # V3-Large: block 0 (16 -> 16, stride 1) shares the stem's width; blocks 6-9 share one group.
    assert layout.members[0] == [-1, 0]
    group = next(g for g, members in enumerate(layout.members) if len(members) == 4)
    width, new = candidate_widths(plan, layout, Slot("group", group))[2]
    narrowed = narrow(model, new)
    members = layout.members[group]
    for b in members:
        assert narrowed.blocks[b].out_chs == width
    for b in members[1:]:
        assert narrowed.blocks[b].in_chs == width and narrowed.blocks[b].residual
    assert [s.residual for s in narrowed.blocks] == [s.residual for s in model.blocks]
    assert [blk.use_residual for st in narrowed.stages for blk in st] == [
        blk.use_residual for st in model.stages for blk in st
    ]
    assert narrowed(torch.randn(1, 1, 32, 32)).shape == (1, 4)
    # The stem's group: cutting it narrows block 0 (no expansion of its own) as one.
    stem_w, stem_plan = candidate_widths(plan, layout, Slot("group", 0))[0]
    blocks = narrow(model, stem_plan).blocks
    assert (blocks[0].in_chs, blocks[0].exp_chs, blocks[0].out_chs, blocks[1].in_chs) == (stem_w,) * 4


def test_a_plan_that_would_add_or_remove_a_shortcut_or_an_expansion_is_refused():
    model = _model("mobilenet_v3_small_100")
    layout, plan = Layout.of(model), WidthPlan.of(model)
    # Block 6 maps 40 -> 48 at stride 1 without a shortcut: 48 -> 40 would create one.
    g48 = layout.group_out[6]
    bad = plan.with_width(Slot("group", g48), 40)
    assert "gain its identity shortcut" in bad.problem(layout)
    with pytest.raises(ValueError, match="shortcut"):
        bad.config(model)
    assert 40 not in [w for w, _ in candidate_widths(plan, layout, Slot("group", g48))]
    # Block 2's expansion (88) may not become its input width (24): the 1x1 expansion would vanish.
    assert 24 not in [w for w, _ in candidate_widths(plan, layout, Slot("exp", 2))]
    assert "expansion would equal" in plan.with_width(Slot("exp", 2), 24).problem(layout)


def test_v3_se_width_follows_the_expansion_by_the_family_rule():
    model = _model("mobilenet_v3_small_100")
    plan = WidthPlan.of(model)
    narrowed = narrow(model, plan.with_width(Slot("exp", 4), 120))
    assert narrowed.blocks[4].exp_chs == 120 and narrowed.blocks[4].se_chs == 32  # make_divisible(120 / 4, 8)
    assert narrowed.stages[2][1].se.fc1.out_channels == 32


def _zero_consumers(model, cmap, slot, dropped):
    modules = dict(model.named_modules())
    for entry in cmap.consumers(slot):
        modules[entry.module].weight.data[:, dropped] = 0


@pytest.mark.parametrize("name", ["mobilenet_v2_035", "mobilenet_v1_025", "mobilenet_v3_small_minimal_100"])
def test_l2_filter_selection_keeps_the_largest_norms_and_narrowing_computes_the_sub_network(name):
    model = _model(name)
    layout, plan = Layout.of(model), WidthPlan.of(model)
    cmap = ChannelMap.of(model)
    modules = dict(model.named_modules())
    x = torch.randn(2, 1, 32, 32)
    slots = [s for s in layout.slots() if s.kind in ("group", "exp")]
    groups = [s for s in slots if s.kind == "group" and len(layout.members[s.index]) > 1]
    groups.sort(key=plan.get, reverse=True)  # a wide residual group (several projections write it)
    picks = groups[:1] + [s for s in slots if s.kind == "exp"][:1] + [slots[-1]]
    for slot in picks:
        width, new = candidate_widths(plan, layout, slot)[1]
        key = ("group", slot.index) if slot.kind == "group" else ("exp", slot.index)
        # Independently: the norms summed over every conv that writes the slot (all projections of a group).
        producers = [e for e in cmap.entries if e.out == key and e.rank]
        norms = sum(modules[e.module].weight.detach().flatten(1).norm(dim=1) for e in producers)
        expected = sorted(torch.argsort(norms, descending=True)[:width].tolist())
        kept = kept_channels(model, new)[key]
        assert kept.tolist() == expected
        assert norms[kept].min() >= norms[[i for i in range(len(norms)) if i not in expected]].max()
        narrowed = narrow(model, new)
        wide = narrow(model, plan)  # a copy
        dropped = [i for i in range(len(norms)) if i not in expected]
        _zero_consumers(wide, ChannelMap.of(wide), key, dropped)
        torch.testing.assert_close(narrowed(x), wide(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(narrowed(x), model(x), rtol=1e-3, atol=1e-4)  # the dropped channels did matter


# --- selection, schedule, width choice ------------------------------------------------------------


def test_slope_and_accuracy_criteria_pick_different_proposals():
    proposals = [
        {"slot": "a", "holdout_top1": 80.0, "predicted_ms": 9.0},  # -5 points for 1 ms
        {"slot": "b", "holdout_top1": 78.0, "predicted_ms": 7.0},  # -7 points for 3 ms: the better slope
        {"slot": "c", "skipped": "no narrower width meets the step's latency target"},
    ]
    assert select(proposals, 85.0, 10.0, "slope") == 1
    assert select(proposals, 85.0, 10.0, "accuracy") == 0
    assert select([proposals[2]], 85.0, 10.0, "slope") is None


def test_the_loop_applies_the_criterion_it_is_given(tmp_path):
    picks = {}
    for criterion in ("slope", "accuracy"):
        state, *_ = _run(tmp_path, criterion, criterion=criterion)
        prev = state["seed"]
        for step in state["steps"]:
            index = select(step["proposals"], prev["holdout_top1"], prev["measured_ms"], criterion)
            assert step["chosen"] == step["proposals"][index]["slot"]
            prev = step
        picks[criterion] = [s["chosen"] for s in state["steps"]]
    assert picks["slope"] != picks["accuracy"]


def test_schedule_each_target_is_previous_measured_minus_delta_times_seed(tmp_path):
    state, latency, _ = _run(tmp_path, budget=0.5, delta=0.08)
    seed_ms, budget = state["seed_ms"], state["budget_ms"]
    assert budget == pytest.approx(0.5 * seed_ms)
    prev = seed_ms
    assert len(state["steps"]) >= 3
    for step in state["steps"]:
        assert step["target_ms"] == pytest.approx(max(prev - 0.08 * seed_ms, budget))
        assert step["target_ms"] == pytest.approx(step_target(prev, seed_ms, 0.08, budget))
        for p in step["proposals"]:
            if not p.get("skipped"):
                assert p["predicted_ms"] <= step["target_ms"]
        assert step["measured_ms"] <= step["target_ms"] + 1e-9
        prev = step["measured_ms"]
    assert state["stop_reason"] == "target reached" and prev <= budget
    assert all(prev_step["measured_ms"] > budget for prev_step in state["steps"][:-1])
    # Every accepted network is a model directory with its widths.
    last = mobilenets.load_model(tmp_path / "run" / state["steps"][-1]["dir"])
    assert WidthPlan.of(last).as_dict() == state["steps"][-1]["plan"]


def test_each_proposal_is_shrunk_just_enough():
    model = _model("mobilenet_v3_small_minimal_100", width_mult=0.5)
    layout, plan = Layout.of(model), WidthPlan.of(model)
    full = plan_madds(plan, layout)
    target = 0.97 * full
    assert FakeLatency().predict(model) == full / 1e5
    for slot in layout.slots():
        candidates = candidate_widths(plan, layout, slot)

        def fits(p):
            return plan_madds(p, layout) <= target

        choice = choose_width(plan, layout, slot, fits)
        meeting = [w for w, p in candidates if fits(p)]
        assert (choice is None) == (not meeting)
        if choice:
            assert choice[0] == max(meeting)  # the widest that meets the target


class Killed(BaseException):
    """A stand-in for kill -9: nothing after it runs (not even except Exception handlers)."""


def test_resume_after_a_kill_continues_to_the_same_result(tmp_path):
    reference, *_ = _run(tmp_path, "reference")
    seed = _model("mobilenet_v3_small_minimal_100", width_mult=0.5)
    settings = SearchSettings(budget=0.7, delta=0.1)
    count = {"n": 0}

    def kill_at(n):
        def hook(record):
            count["n"] += 1
            if count["n"] == n:
                raise Killed

        return hook

    out = tmp_path / "killed"
    acc = FakeAccuracy({"final": 3.0, "exp9": 0.2})
    with pytest.raises(Killed):
        search(seed, out, FakeLatency(), acc, settings, on_proposal=kill_at(22))  # in the second step
    saved = json.loads((out / STATE_FILE).read_text())
    assert len(saved["steps"]) == 1 and len(saved["current"]["proposals"]) == 22 - len(
        reference["steps"][0]["proposals"]
    )
    calls_before = acc.calls
    count["n"] = 0
    resumed = search(seed, out, FakeLatency(), acc, settings, resume=True)
    # The done proposals were not redone; the result is the uninterrupted run's.
    assert acc.calls - calls_before < sum(len(s["proposals"]) for s in reference["steps"]) - 5
    strip = [{k: v for k, v in s.items() if k != "proposals"} for s in reference["steps"]]
    assert [{k: v for k, v in s.items() if k != "proposals"} for s in resumed["steps"]] == strip
    with pytest.raises(ValueError, match="--delta cannot change"):
        search(seed, out, FakeLatency(), acc, SearchSettings(budget=0.7, delta=0.2), resume=True)


# --- the real thing, end to end on tiny data -----------------------------------------------------------


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> tuple[Path, Path]:
    from mobilenets.training import load_data

    root = tmp_path_factory.mktemp("netadapt")
    idx = make_idx_dir(root / "idx", n_train=200, n_test=40)
    spec = load_data(str(idx), resolution=32, in_chans=1)
    model = mobilenets.create_model("mobilenet_v3_small_100", num_classes=4, in_chans=1, stem_stride=1)
    model.labels, model.preprocessing = spec.labels, spec.preprocessing
    mobilenets.save_model(model, root / "seed")
    return root / "seed", idx


def _runtime() -> str:
    from mobilenets.deploy.runtimes import available

    return "onnxruntime" if available("onnxruntime") else "torch"


def test_adapt_cli_end_to_end(tmp_path, seed_dir, capsys):
    seed, idx = seed_dir
    out = tmp_path / "adapt"
    argv = ["adapt", str(seed), "--data", str(idx), "-o", str(out), "--target", "0.95", "--delta", "0.02",
            "--runtime", _runtime(), "--steps", "2", "--batch-size", "16", "--holdout", "40", "--finish", "none",
            "--uniform", "0.5", "--max-steps", "1", "--rounds", "2", "--round-seconds", "0.02",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "uniform_0.5" in printed and "latency table:" in printed and "cpu:" in printed
    history = json.loads((out / "history.json").read_text())
    assert len(history["steps"]) == 1
    step = history["steps"][0]
    assert {"proposals", "plan", "predicted_ms", "measured_ms", "holdout_top1", "target_ms"} <= set(step)
    assert step["measured_ms"] > 0 and history["latency_table"]["entries"] > 0
    assert history["latency_table"]["mape_predicted"] is not None  # the step's prediction checked against timing
    assert set(history["comparison"]["measured_ms"]) == {"seed", "adapted", "uniform_0.5", "step_00", step["dir"]}
    assert (out / "pareto.png").stat().st_size > 1000
    table = json.loads((out / "latency_table.json").read_text())
    assert table["fingerprint"]["cpu"] and table["fingerprint"]["runtime"] == _runtime()
    for directory in ("step_00", step["dir"], "uniform_0.5"):
        assert mobilenets.load_model(out / directory).metadata["netadapt"]
    report = mobilenets.deploy.export(mobilenets.load_model(out / step["dir"]), tmp_path / "step.onnx", "onnx")
    assert report.max_rel_error < 1e-4
    assert WidthPlan.of(mobilenets.load_model(out / step["dir"])).as_dict() == step["plan"]
    # Not a new or empty directory: refused, nothing touched.
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    # A finished job resumes to the same history (nothing redone).
    assert main(["adapt", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "history.json").read_text())["steps"] == history["steps"]
    assert main(["adapt", "--resume", str(out), "--delta", "0.1"]) == 2


def test_an_adapted_model_quantizes_and_info_shows_its_widths(tmp_path, seed_dir, capsys):
    pytest.importorskip("onnxruntime")
    seed, idx = seed_dir
    model = mobilenets.load_model(seed)
    plan = WidthPlan.of(model)
    narrowed = narrow(model, plan.with_width(Slot("exp", 4), 120).with_width(Slot("group", 0), 8))
    mobilenets.save_model(narrowed, tmp_path / "adapted")
    assert main(["info", str(tmp_path / "adapted")]) == 0
    text = capsys.readouterr().out
    assert "widths: stem 8;" in text and "40/120/40 se32" in text and "at 32x32" in text
    assert main(["info", str(tmp_path / "adapted"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["widths"]["stem"] == 8
    from mobilenets.deploy import quantize_model

    report = quantize_model(narrowed, tmp_path / "adapted.int8.onnx", str(idx), calibration=16, eval_images=16,
                            validation=0, max_drop=None)  # fmt: skip
    assert (tmp_path / "adapted.int8.onnx").is_file() and report is not None


@pytest.mark.parametrize("content", ['{"experiment": "my results"}\n', "not json at all\n", "[1, 2]\n"])
def test_adapt_refuses_a_table_path_holding_a_file_of_the_users(tmp_path, seed_dir, capsys, content):
    seed, idx = seed_dir
    mine = tmp_path / "results.json"
    mine.write_text(content)
    out = tmp_path / "adapt"
    argv = ["adapt", str(seed), "--data", str(idx), "-o", str(out), "--table", str(mine), "--runtime", _runtime(),
            "--target", "0.95", "--steps", "2", "--batch-size", "16", "--holdout", "40", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a latency table written by mobilenets" in err, err
    assert mine.read_text() == content and not out.exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-size", "0", "--batch-size must be a whole number >= 1, got 0"),
        ("--round-seconds", "-1", "--round-seconds must be a positive finite number, got -1.0"),
        ("--round-seconds", "inf", "--round-seconds must be a positive finite number"),
        ("--lr", "nan", "--lr must be a positive finite number, got nan"),
        ("--lr", "0", "--lr must be a positive finite number"),
        ("--rounds", "0", "--rounds must be a whole number >= 1, got 0"),
        ("--steps", "0", "--steps must be"),
        ("--holdout", "-3", "--holdout must be"),
        ("--workers", "-1", "--workers must be"),
        ("--finish-epochs", "0", "--finish-epochs must be"),
        ("--resolution", "0", "--resolution must be a whole number between 1 and 4096, got 0"),
        ("--resolution", "100000", "--resolution must be a whole number between 1 and 4096"),
        ("--resolution", "8", "--resolution 8 is too small for mobilenet_v3_small_100: .* at least 16x16"),
    ],
)
def test_adapt_options_are_checked_before_anything_is_written(tmp_path, seed_dir, capsys, option, value, message):
    import re

    from mobilenets.search.netadapt import AdaptConfig

    seed, idx = seed_dir
    out = tmp_path / "adapt"
    argv = ["adapt", str(seed), "--data", str(idx), "-o", str(out), "--runtime", _runtime(), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()  # nothing half-made: the same -o works once the option is fixed
    if option != "--resolution" or value != "8":  # that one needs the model: checked when it is loaded
        field = option[2:].replace("-", "_")
        given = {field: float(value) if field in ("lr", "round_seconds") else int(value)}
        with pytest.raises(ValueError, match=message):
            AdaptConfig(model=str(seed), output=str(out), **given).check()


def test_a_job_saved_with_options_that_cannot_run_says_so_on_resume(tmp_path, seed_dir, capsys):
    from mobilenets.search.netadapt import AdaptConfig

    seed, _ = seed_dir
    out = tmp_path / "adapt"
    out.mkdir()  # what an older version left behind after `--rounds 0` crashed
    config = {**vars(AdaptConfig(model=str(seed), output=str(out))), "rounds": 0}
    (out / "adapt.json").write_text(json.dumps(config))
    assert main(["adapt", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"{out / 'adapt.json'}: --rounds must be a whole number >= 1, got 0; this job cannot resume" in err
    (out / "adapt.json").write_text(json.dumps({**config, "rounds": 5, "colour": 1}))
    assert main(["adapt", "--resume", str(out)]) == 2
    assert "unknown fields ['colour']" in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [("rounds", 0), ("round_seconds", -1.0), ("round_seconds", math.nan)])
def test_a_latency_target_checks_its_timing(field, value):
    from mobilenets.search.latency import Target

    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be"):
        Target(runtime="torch", **{field: value}).check()
