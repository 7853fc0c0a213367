"""The token budget (runtime/budget.py): candidates, the choice from a cost table (fake tables for
the decision, one table measured for real on the CPU), hysteresis, and the per-device cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from testutils import small_o
from utptrack_ros.config import BudgetConfig, from_mapping
from utptrack_ros.errors import ConfigError
from utptrack_ros.models import model_config
from utptrack_ros.runtime.budget import (
    CONFIGURED, UNPRUNED, BudgetController, CostCache, candidate_schedules, choose_budget, select_schedule,
)
from utptrack_ros.runtime.tracker_network import TorchNetwork
from utptrack_ros.tracker import MultiTracker

O256 = model_config("o256")


def schedules(**budget):
    return candidate_schedules(O256, O256.prune, BudgetConfig(**budget))


def test_budget_config_refuses_unknown_keys_bad_modes_and_out_of_range_values() -> None:
    assert from_mapping(BudgetConfig, {"mode": "auto", "deadline_ms": 5}).deadline_ms == 5.0
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(BudgetConfig, {"mode": "auto", "deadline": 5})
    with pytest.raises(ConfigError, match="prune.mode"):
        BudgetConfig(mode="fast")
    with pytest.raises(ConfigError, match="deadline_ms"):
        BudgetConfig(deadline_ms=-1.0)
    with pytest.raises(ConfigError, match="needs prune.mode"):
        BudgetConfig(mode="off", deadline_ms=10.0)
    with pytest.raises(ConfigError, match="hysteresis"):
        BudgetConfig(hysteresis=0.9)
    with pytest.raises(ConfigError, match="ladder"):
        BudgetConfig(ladder=(0.5, 0.0))


def test_candidates_per_mode_most_tokens_first() -> None:
    assert [s.label for s in schedules(mode="off")] == [UNPRUNED]
    assert [s.label for s in schedules(mode="on")] == [CONFIGURED]
    assert [s.label for s in schedules(mode="auto")] == [UNPRUNED, CONFIGURED]
    ladder = schedules(mode="on", deadline_ms=5.0)
    # o256's configured ratios are 0.7 everywhere: the ladder's 0.70 is the configured schedule
    assert [s.label for s in ladder] == [UNPRUNED, "keep0.90", "keep0.80", CONFIGURED, "keep0.60", "keep0.50"]
    tokens = [s.tokens for s in ladder]
    assert tokens == sorted(tokens, reverse=True) and len(set(tokens)) == len(tokens)
    assert ladder[0].tokens == 384 and ladder[3].tokens == pytest.approx(252.0, abs=0.5)  # method.md 4.4
    # a model whose configured ratios prune nothing has one schedule and nothing to measure
    base = model_config("o256_base")
    only = candidate_schedules(base, base.prune, BudgetConfig(mode="auto"))
    assert len(only) == 1 and not only[0].prune.enabled


def test_auto_runs_the_cheaper_schedule_either_way() -> None:
    cands, budget = schedules(mode="auto"), BudgetConfig(mode="auto")
    gpu = {UNPRUNED: 7.6, CONFIGURED: 11.8}  # issue 17, H200 batch 1 fp32
    chosen, reason = select_schedule(cands, gpu, budget)
    assert chosen.label == UNPRUNED and not chosen.prune.enabled
    assert "7.60" in reason and "11.80" in reason
    cpu = {UNPRUNED: 31.3, CONFIGURED: 22.4}  # batch 16
    chosen, _ = select_schedule(cands, cpu, budget)
    assert chosen.label == CONFIGURED and chosen.prune == O256.prune


def test_auto_hysteresis_keeps_the_current_schedule_unless_clearly_cheaper() -> None:
    cands, budget = schedules(mode="auto"), BudgetConfig(mode="auto", hysteresis=0.1)
    close = {UNPRUNED: 10.0, CONFIGURED: 9.5}  # 5 % cheaper: not enough to leave unpruned
    assert select_schedule(cands, close, budget, current=UNPRUNED)[0].label == UNPRUNED
    assert select_schedule(cands, close, budget, current=CONFIGURED)[0].label == CONFIGURED
    assert select_schedule(cands, close, budget)[0].label == CONFIGURED  # no history: the cheaper
    clear = {UNPRUNED: 10.0, CONFIGURED: 8.0}
    assert select_schedule(cands, clear, budget, current=UNPRUNED)[0].label == CONFIGURED


def fake_table(cands, costs):
    return {s.label: c for s, c in zip(cands, costs)}


def test_deadline_takes_the_most_tokens_that_meet_it() -> None:
    cands = schedules(mode="on", deadline_ms=5.0)
    table = fake_table(cands, [8.0, 7.0, 6.0, 5.0, 4.0, 3.0])
    chosen, reason = select_schedule(cands, table, BudgetConfig(deadline_ms=5.0))
    assert chosen.label == CONFIGURED and "deadline 5 ms" in reason
    chosen, _ = select_schedule(cands, table, BudgetConfig(deadline_ms=7.5))
    assert chosen.label == "keep0.90"
    chosen, _ = select_schedule(cands, table, BudgetConfig(deadline_ms=100.0))
    assert chosen.label == UNPRUNED
    # a GPU where pruning costs more than it saves: the unpruned forward is the cheapest
    gpu = fake_table(cands, [2.0, 2.6, 2.5, 2.4, 2.3, 2.2])
    chosen, reason = select_schedule(cands, gpu, BudgetConfig(deadline_ms=2.1))
    assert chosen.label == UNPRUNED
    chosen, reason = select_schedule(cands, gpu, BudgetConfig(deadline_ms=1.0))
    assert chosen.label == UNPRUNED and "missed by every schedule" in reason
    with pytest.raises(ValueError, match="no entry"):
        select_schedule(cands, {UNPRUNED: 1.0}, BudgetConfig(deadline_ms=1.0))


def test_deadline_hysteresis_needs_a_margin_to_grow() -> None:
    cands = schedules(mode="on", deadline_ms=5.0)
    budget = BudgetConfig(deadline_ms=5.0, hysteresis=0.1)
    table = fake_table(cands, [9.0, 8.0, 4.8, 4.0, 3.0, 2.0])  # keep0.80 at 4.8 ms: within 10 % of 5
    assert select_schedule(cands, table, budget)[0].label == "keep0.80"
    assert select_schedule(cands, table, budget, current=CONFIGURED)[0].label == CONFIGURED
    assert select_schedule(cands, table, budget, current="keep0.80")[0].label == "keep0.80"
    table["keep0.80"] = 4.4  # now clearly inside: grow
    assert select_schedule(cands, table, budget, current=CONFIGURED)[0].label == "keep0.80"
    table[CONFIGURED] = 5.2  # the current one misses: shrink at once
    assert select_schedule(cands, table, budget, current=CONFIGURED)[0].label == "keep0.80"


def test_controller_does_not_flap_around_the_line_and_shrinks_when_the_deadline_is_missed() -> None:
    cands = schedules(mode="on", deadline_ms=5.0)
    budget = BudgetConfig(deadline_ms=5.0, hysteresis=0.1)
    table = fake_table(cands, [9.0, 8.0, 6.0, 4.7, 3.5, 2.5])
    ctl = BudgetController(cands, table, budget, current=CONFIGURED, dwell=5, smoothing=0.2)
    rng = np.random.default_rng(0)
    switches = [ctl.observe(4.7 + float(rng.normal(0, 0.2))) for _ in range(200)]
    assert not any(switches), "noise around the measured cost must not change the schedule"
    # the machine gets 25 % slower (another process, thermal limits): the configured schedule
    # misses, the next smaller one meets the deadline and stays
    moved = [s for s in (ctl.observe(1.25 * table[ctl.current]) for _ in range(200)) if s is not None]
    assert [s.label for s in moved] == ["keep0.60"]
    assert ctl.current == "keep0.60" and "deadline" in ctl.reason


def test_cache_round_trip_keys_and_damaged_files(tmp_path) -> None:
    cache = CostCache(tmp_path)
    key = {"device": "cuda X", "model": "../../etc/o256", "batch": 1}
    path = cache.store(key, {UNPRUNED: 2.0, CONFIGURED: 3.0})
    assert path.parent == tmp_path / "budget" and not path.name.startswith(".")
    assert cache.load(key) == {UNPRUNED: 2.0, CONFIGURED: 3.0}
    assert cache.load({**key, "batch": 16}) == {}
    assert cache.path({**key, "batch": 16}) != path
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "key": {**key, "device": "cpu"}}))  # a file for another key
    assert cache.load(key) == {}
    path.write_text("{not json")
    assert cache.load(key) == {}


def test_a_real_cost_table_is_measured_once_cached_and_applied(tmp_path) -> None:
    model = small_o("o256")
    configured = model.prune
    tracker = MultiTracker(model, device="cpu", optimize=False)
    budget = BudgetConfig(mode="auto", runs=3)
    choice = tracker.choose_token_budget(budget, configured, cache_dir=tmp_path)
    assert set(choice.costs_ms) == {UNPRUNED, CONFIGURED}
    assert all(0 < ms < 10_000 for ms in choice.costs_ms.values())
    assert not choice.cached and choice.reason.startswith("auto:")
    cheaper = min(choice.costs_ms, key=choice.costs_ms.get)
    assert choice.schedule.label == cheaper
    assert tracker.model.prune == choice.prune
    files = list((tmp_path / "budget").glob("o256-*.json"))
    assert len(files) == 1

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached table must not be measured again")

    again = choose_budget(TorchNetwork(tracker.model), tracker.model, configured, budget, 1, "cpu",
                          CostCache(tmp_path), measure=no_measuring)
    assert again.cached and again.costs_ms == choice.costs_ms and "cached" in again.reason
    # the tracker still tracks with the chosen ratios
    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tracker.init(image, [[50, 40, 30, 20]])
    assert tracker.track(image)[0].box.is_finite()
