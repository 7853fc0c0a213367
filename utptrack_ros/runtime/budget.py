"""The token budget chosen for the machine it runs on (``prune.mode``, ``prune.deadline_ms``).

On a CPU pruning pays roughly in proportion to the MACs it removes; on a GPU at batch 1 the
sorts, gathers and scatters can cost more than the removed tokens save (method.md 11, the
paper's own limitation). So the keep ratios are chosen from a *cost table*: the measured forward
time (``forward_search``, median of ``runs``) of each candidate schedule for the configured batch
on this device and runtime.

* :func:`candidate_schedules` lists the schedules a :class:`~utptrack_ros.config.BudgetConfig`
  can choose from: unpruned, the configured keep ratios and (with a deadline) the ``ladder`` of
  uniform ratios, most tokens first.
* :func:`select_schedule` is the pure decision: ``off`` -> unpruned; ``on`` -> the configured
  ratios; ``auto`` -> the cheaper of the two; ``deadline_ms`` -> the schedule with the most tokens
  whose cost meets the deadline. ``current`` (the schedule running now) adds hysteresis: a larger
  schedule must meet ``(1 - hysteresis) * deadline``, and ``auto`` leaves the current schedule only
  for one ``hysteresis`` cheaper. It returns a short reason for ``/diagnostics``.
* :func:`measure_costs` times the schedules on a :class:`TrackerNetwork`; :class:`CostCache`
  keeps tables in JSON files per device, runtime, model weights and batch (file names are a hash
  of that key; the key is stored in the file and compared on reading).
* :func:`choose_budget` puts these together (``MultiTracker.choose_token_budget`` calls it at
  activation); :class:`BudgetController` re-decides from live per-frame forward times.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from ..config import BudgetConfig, ModelConfig, PruneConfig
from ..machine import cpu_model
from ..models.examples import example_inputs
from ..models.ledger import expected_ledger
from .graph_names import weights_digest
from .network import default_cache_dir
from .tracker_network import TrackerNetwork

log = logging.getLogger(__name__)

UNPRUNED = "unpruned"
CONFIGURED = "configured"
#: bump when the file layout or the measurement changes: older tables are measured again
TABLE_VERSION = 1


@dataclass(frozen=True)
class Schedule:
    """One candidate: its keep ratios, a label (``unpruned``, ``configured`` or ``keep0.70``) and
    the average visual tokens per encoder block it leaves (method.md 4.4; more = less pruned)."""

    label: str
    prune: PruneConfig
    tokens: float


@dataclass(frozen=True)
class BudgetChoice:
    """The schedule chosen, its measured cost, why, and the table it was chosen from."""

    schedule: Schedule
    cost_ms: Optional[float]
    reason: str
    costs_ms: Mapping[str, float] = field(default_factory=dict)
    cached: bool = False

    @property
    def prune(self) -> PruneConfig:
        return self.schedule.prune


def _tokens(config: ModelConfig, prune: PruneConfig) -> float:
    return expected_ledger(config, prune).average_visual


def budget_measures(budget: BudgetConfig) -> bool:
    """Whether ``budget`` needs a cost table (``auto`` or a deadline); ``on`` / ``off`` alone do not."""
    return budget.mode == "auto" or budget.deadline_ms > 0


def candidate_schedules(config: ModelConfig, configured: PruneConfig, budget: BudgetConfig) -> list[Schedule]:
    """The schedules ``budget`` chooses from, most tokens first (duplicates by token count dropped,
    keeping ``unpruned`` / ``configured`` labels)."""
    unpruned = configured.off()
    out = [Schedule(UNPRUNED, unpruned, _tokens(config, unpruned))]
    if budget.mode == "off":
        return out
    out.append(Schedule(CONFIGURED, configured, _tokens(config, configured)))
    if budget.deadline_ms > 0:
        for r in budget.ladder:
            p = configured.with_keep_ratio(r, r, r)
            out.append(Schedule(f"keep{r:.2f}", p, _tokens(config, p)))
    unique: dict[float, Schedule] = {}
    for s in out:  # unpruned and configured first: they keep their names
        unique.setdefault(round(s.tokens, 6), s)
    if budget.mode == "on" and budget.deadline_ms <= 0:
        return [unique.get(round(out[1].tokens, 6), out[1])]
    return sorted(unique.values(), key=lambda s: -s.tokens)


def select_schedule(
    schedules: Sequence[Schedule],
    costs_ms: Mapping[str, float],
    budget: BudgetConfig,
    current: Optional[str] = None,
) -> tuple[Schedule, str]:
    """Pick one of ``schedules`` (from :func:`candidate_schedules`) by ``budget`` and the measured
    ``costs_ms`` (label -> ms); ``current``: the label running now (hysteresis). Returns the
    schedule and a one-line reason."""
    by_label = {s.label: s for s in schedules}
    if budget.mode == "off":
        return by_label[UNPRUNED], "prune.mode off: unpruned"
    if len(schedules) == 1:
        s = schedules[0]
        why = "prune.mode on: the configured keep ratios" if s.label == CONFIGURED else \
            "the configured keep ratios prune nothing"
        return s, why
    missing = [s.label for s in schedules if s.label not in costs_ms]
    if missing:
        raise ValueError(f"the cost table has no entry for {missing}")
    h = budget.hysteresis
    if budget.deadline_ms > 0:
        return _by_deadline(schedules, costs_ms, budget.deadline_ms, h, current)
    a, b = by_label[CONFIGURED], by_label[UNPRUNED]
    ca, cb = costs_ms[a.label], costs_ms[b.label]
    best, other = (a, b) if ca <= cb else (b, a)
    if current == other.label and costs_ms[best.label] > (1.0 - h) * costs_ms[other.label]:
        best, other = other, best  # not cheaper by the hysteresis margin: stay
        return best, (f"auto: staying {best.label} {costs_ms[best.label]:.2f} ms; {other.label} "
                      f"{costs_ms[other.label]:.2f} ms is not {h:.0%} cheaper")
    return best, f"auto: {best.label} {costs_ms[best.label]:.2f} ms <= {other.label} {costs_ms[other.label]:.2f} ms"


def _by_deadline(
    schedules: Sequence[Schedule], costs: Mapping[str, float], deadline: float, h: float, current: Optional[str]
) -> tuple[Schedule, str]:
    ordered = sorted(schedules, key=lambda s: -s.tokens)
    labels = [s.label for s in ordered]
    cur = labels.index(current) if current in labels else None

    def limit(i: int) -> float:  # moving to more tokens than now must win by the margin
        return deadline * (1.0 - h) if cur is not None and i < cur else deadline

    for i, s in enumerate(ordered):
        if costs[s.label] <= limit(i):
            return s, (f"deadline {deadline:g} ms: {s.label} ({s.tokens:.0f} tokens/block) "
                       f"{costs[s.label]:.2f} ms")
    cheapest = min(ordered, key=lambda s: costs[s.label])
    return cheapest, (f"deadline {deadline:g} ms missed by every schedule: cheapest {cheapest.label} "
                      f"{costs[cheapest.label]:.2f} ms")


# -- measuring -------------------------------------------------------------------------------------


def device_name(device: Union[str, torch.device]) -> str:
    """The accelerator (or CPU model and torch threads) that runs ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda {torch.cuda.get_device_name(index)} sm{major}{minor}"
    return f"{device.type} {cpu_model()} x{torch.get_num_threads()}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_costs(
    network: TrackerNetwork,
    config: ModelConfig,
    schedules: Sequence[Schedule],
    batch: int = 1,
    device: Union[str, torch.device] = "cpu",
    runs: int = 10,
    warmup: int = 2,
) -> dict[str, float]:
    """Median ``forward_search`` milliseconds of each schedule on ``network`` at ``batch``, runs
    interleaved across schedules so load affects them alike. The network's keep ratios are those
    of the last schedule afterwards (the caller sets the chosen one)."""
    device = torch.device(device)
    x = example_inputs(config, batch)

    def on(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    with torch.inference_mode():
        tokens = network.embed_templates(on(x.static), on(x.dynamic), on(x.static_box), on(x.dynamic_box))
    search = on(x.search)
    for s in schedules:  # export / load what each needs before anything is timed
        network.set_prune(s.prune)
        network.prepare()
    times: dict[str, list[float]] = {s.label: [] for s in schedules}
    with torch.inference_mode():
        for i in range(warmup + runs):
            for s in schedules:
                network.set_prune(s.prune)
                _sync(device)
                t0 = time.perf_counter()
                network.forward_search(search, tokens)
                _sync(device)
                if i >= warmup:
                    times[s.label].append((time.perf_counter() - t0) * 1e3)
    return {label: statistics.median(v) for label, v in times.items()}


class CostCache:
    """Cost tables in ``<root>/budget/<model>-<hash>.json``; the hash covers the whole key
    (device, runtime, weights digest, batch, versions), which the file also stores and which must
    match on reading. A file that does not parse or match is ignored (and replaced)."""

    def __init__(self, root: Optional[Union[str, os.PathLike]] = None) -> None:
        self.directory = Path(root).expanduser() if root else default_cache_dir()
        self.directory = self.directory / "budget"

    def path(self, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        model = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key.get("model", "model"))).lstrip(".")[:40] or "model"
        return self.directory / f"{model}-{digest}.json"

    def load(self, key: Mapping[str, Any]) -> dict[str, float]:
        path = self.path(key)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("token budget cache %s unreadable (%s); measuring again", path, err)
            return {}
        if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(key)):
            log.warning("token budget cache %s holds another key; measuring again", path)
            return {}
        costs = data.get("costs_ms")
        if not isinstance(costs, dict):
            return {}
        return {str(k): float(v) for k, v in costs.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0}

    def store(self, key: Mapping[str, Any], costs_ms: Mapping[str, float]) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "costs_ms": dict(costs_ms), "measured_at": time.time()},
                                  indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path


def cost_key(network: TrackerNetwork, model: Any, batch: int,
             device: Union[str, torch.device], schedules: Sequence[Schedule]) -> dict[str, Any]:
    """What a cost table depends on (the cache key)."""
    provider = getattr(network, "provider", None)
    return {
        "version": TABLE_VERSION,
        "device": device_name(device),
        "runtime": network.runtime + (f":{provider}" if provider else ""),
        "model": model.config.name,
        "weights": weights_digest(model),
        "batch": int(batch),
        "dtype": str(next(model.parameters()).dtype),
        "torch": torch.__version__,
        "schedules": {s.label: _ratios(s.prune) for s in schedules},
    }


def _ratios(prune: PruneConfig) -> str:
    return " ".join(f"{c}:{','.join(f'{r:g}' for _, r in getattr(prune, c))}" for c in ("ce", "dte", "ste")
                    if getattr(prune, c))


def choose_budget(
    network: TrackerNetwork,
    model: Any,
    configured: PruneConfig,
    budget: BudgetConfig,
    batch: int = 1,
    device: Union[str, torch.device] = "cpu",
    cache: Optional[CostCache] = None,
    current: Optional[str] = None,
    measure: Callable[..., dict[str, float]] = measure_costs,
) -> BudgetChoice:
    """Measure (or read from ``cache``) the cost table of ``budget``'s candidate schedules for
    ``batch`` on ``device`` and choose one (:func:`select_schedule`). Nothing is measured for
    ``off`` or ``on`` without a deadline. The network's keep ratios are left as they were."""
    config: ModelConfig = model.config
    schedules = candidate_schedules(config, configured, budget)
    costs: dict[str, float] = {}
    cached = False
    if len(schedules) > 1:
        cache = cache or CostCache()
        key = cost_key(network, model, batch, device, schedules)
        costs = cache.load(key)
        todo = [s for s in schedules if s.label not in costs]
        cached = not todo
        if todo:
            before = getattr(network, "prune", None) or getattr(model, "prune", None)
            try:
                costs.update(measure(network, config, todo, batch, device, budget.runs))
            finally:
                if before is not None:
                    network.set_prune(before)
            path = cache.store(key, costs)
            log.info("token budget: measured %s at batch %d on %s -> %s", [s.label for s in todo], batch,
                     key["device"], path)
    schedule, why = select_schedule(schedules, costs, budget, current)
    where = f"batch {batch}, {device_name(device)}{', cached' if cached else ''}" if costs else ""
    reason = f"{why} ({where})" if where else why
    return BudgetChoice(schedule, costs.get(schedule.label), reason, costs, cached)


class BudgetController:
    """Re-decides the schedule from live forward times (``observe`` once per frame).

    Each schedule's cost is the table's until frames have run on it; then an exponential moving
    average of the observed times (``smoothing``) replaces it. A change is proposed only after
    ``dwell`` frames on the current schedule and only through :func:`select_schedule` with
    ``current`` set (hysteresis), so costs hovering at the line do not make it flap.
    """

    def __init__(self, schedules: Sequence[Schedule], costs_ms: Mapping[str, float], budget: BudgetConfig,
                 current: str, dwell: int = 30, smoothing: float = 0.1) -> None:
        self.schedules = list(schedules)
        self.costs = dict(costs_ms)
        self.budget = budget
        self.current = current
        self.dwell = dwell
        self.smoothing = smoothing
        self.reason = ""
        self._frames = 0

    def observe(self, forward_ms: float) -> Optional[Schedule]:
        """Record one frame's forward time on the current schedule; returns the schedule to switch
        to, or None to stay."""
        old = self.costs.get(self.current)
        a = self.smoothing if self._frames else 1.0
        self.costs[self.current] = forward_ms if old is None else (1 - a) * old + a * forward_ms
        self._frames += 1
        if self._frames < self.dwell or len(self.schedules) < 2:
            return None
        chosen, self.reason = select_schedule(self.schedules, self.costs, self.budget, self.current)
        if chosen.label == self.current:
            return None
        self.current, self._frames = chosen.label, 0
        return chosen


__all__ = [
    "BudgetChoice", "BudgetController", "CostCache", "Schedule", "budget_measures", "candidate_schedules", "choose_budget",
    "cost_key", "device_name", "measure_costs", "select_schedule",
]
