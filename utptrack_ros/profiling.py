"""Token and MAC ledger of one forward pass, pruned vs unpruned, with measured latency.

Implements the cost accounting of method.md 4.4 and 9.3 (``utptrack profile``):

* **Tokens**: per encoder block, the search-region (SR), static-template (ST) and
  dynamic-template (DT) tokens *leaving* the block, read from the model's
  :class:`~utptrack_ros.types.TokenLedger`; the paper's "average tokens per layer" is the mean
  of the per-block visual totals (UTPTrack-O256: 384 -> 135, average 252).
* **MACs** in two labelled conventions, counted with forward hooks on a real forward:

  - ``paper``: what ``thop`` reports in the official profiler (method.md 9.3): ``nn.Linear``
    (tokens x in x out) and ``nn.Conv2d`` (output elements x Cin/groups x kh x kw) only; the
    attention products q.k^T and attn.v are functional matmuls thop does not see.
  - ``complete``: ``paper`` plus ``2 * N^2 * C`` per attention block, N = tokens entering that
    block's attention (text token included), C = embedding width; for Fast-iTPN attention also
    its q and v projections (``2 * N * C^2``), which the official code (and this one) computes
    with ``F.linear`` so that thop, like ``paper``, does not count them.

  Both are given for the full forward (template embedding included: the paper's figure,
  o256 34.5 G -> 23.8 G) and per tracked frame (``forward_search`` only: what the tracker runs
  each frame, templates being embedded once).
* **Latency**: median of interleaved pruned / unpruned ``forward_search`` runs after warm-up,
  under ``torch.inference_mode`` with the configured number of torch threads, so the latency
  ratio can be read next to the MAC ratio.

The unpruned side uses the same weights with ``config.prune.off()`` (every keep ratio 1.0),
set at run time with ``model.set_prune``.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from .config import ModelConfig, PruneConfig
from .models import UTPTrack, create_model
from .models.encoder import Attention
from .models.inference import prepare_for_inference
from .models.itpn import ItpnAttention
from .models.examples import example_inputs
from .types import TokenLedger

log = logging.getLogger(__name__)

__all__ = [
    "MacCount",
    "ForwardProfile",
    "ProfileReport",
    "linear_macs",
    "conv2d_macs",
    "count_macs",
    "measure_latency",
    "profile_model",
    "profile_variant",
    "format_report",
    "add_arguments",
    "run",
    "main",
]

PAPER_CONVENTION = "paper (thop: Linear + Conv only; attention products q·kᵀ and attn·v not counted)"
COMPLETE_CONVENTION = ("complete (adds 2·N²·C per attention block, N = tokens entering that block's attention; "
                       "Fast-iTPN: + its functional q/v projections 2·N·C²)")


# -- MAC counting ------------------------------------------------------------------------------


def linear_macs(module: nn.Linear, output: Tensor) -> int:
    """MACs of one ``nn.Linear`` call: rows x in_features x out_features (bias not counted).

    Args:
        output: (..., out_features) the layer's output; rows = output.numel() / out_features.
    """
    rows = output.numel() // module.out_features
    return rows * module.in_features * module.out_features


def conv2d_macs(module: nn.Conv2d, output: Tensor) -> int:
    """MACs of one ``nn.Conv2d`` call: output elements x (Cin / groups) x kh x kw (bias not counted).

    Args:
        output: (B, Cout, H, W).
    """
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass (batch as run; profiles use batch 1).

    Attributes:
        linear_conv: ``nn.Linear`` + ``nn.Conv2d`` MACs (the paper / thop convention).
        attention: ``2 * N^2 * C`` summed over attention blocks (q.k^T and attn.v), plus
            ``2 * N * C^2`` per Fast-iTPN block (its q/v projections are functional).
        attn_tokens: N entering each attention block, in call order.
    """

    linear_conv: int
    attention: int
    attn_tokens: tuple[int, ...] = ()

    @property
    def paper(self) -> int:
        return self.linear_conv

    @property
    def complete(self) -> int:
        return self.linear_conv + self.attention


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, (Attention, ItpnAttention))


@contextmanager
def _mac_hooks(model: nn.Module) -> Iterator[dict[str, Any]]:
    acc: dict[str, Any] = {"linear_conv": 0, "attention": 0, "attn_tokens": []}

    def on_linear(module: nn.Module, _inp: Any, out: Tensor) -> None:
        acc["linear_conv"] += linear_macs(module, out)  # type: ignore[arg-type]

    def on_conv(module: nn.Module, _inp: Any, out: Tensor) -> None:
        acc["linear_conv"] += conv2d_macs(module, out)  # type: ignore[arg-type]

    def on_attention(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]  # (B, N, C)
        b, n, c = x.shape
        acc["attention"] += 2 * b * n * n * c
        if isinstance(module, ItpnAttention):
            acc["attention"] += 2 * b * n * c * c
        acc["attn_tokens"].append(int(n))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
        elif isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif _is_attention(module):
            handles.append(module.register_forward_pre_hook(on_attention))
    try:
        yield acc
    finally:
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, fn: Callable[[], Any]) -> tuple[MacCount, Any]:
    """Run ``fn()`` once under ``torch.inference_mode`` with MAC hooks on ``model``'s submodules.

    Args:
        model: the module whose ``nn.Linear`` / ``nn.Conv2d`` / attention blocks are counted.
        fn: a closure running one forward of ``model``.
    Returns:
        (:class:`MacCount`, whatever ``fn`` returned).
    """
    with _mac_hooks(model) as acc, torch.inference_mode():
        result = fn()
    return MacCount(acc["linear_conv"], acc["attention"], tuple(acc["attn_tokens"])), result


# -- timing ----------------------------------------------------------------------------------------


def measure_latency(fns: Sequence[Callable[[], Any]], runs: int, warmup: int) -> list[list[float]]:
    """Time several closures, interleaved run by run so machine load affects them alike.

    Args:
        fns: closures to time (each runs one forward).
        runs: timed runs per closure; warmup: untimed runs per closure first.
    Returns:
        Per closure, the ``runs`` wall times in milliseconds.
    """
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns:
                fn()
        times: list[list[float]] = [[] for _ in fns]
        for _ in range(runs):
            for i, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn()
                times[i].append((time.perf_counter() - t0) * 1e3)
    return times


@contextmanager
def _threads(n: Optional[int]) -> Iterator[int]:
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


# -- profiles --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardProfile:
    """Costs of one model configuration.

    Attributes:
        prune: keep ratios used.
        ledger: token counts leaving each block (from the model's output).
        macs_full: full forward (template embedding + search step), the paper's figure.
        macs_frame: ``forward_search`` only (per tracked frame).
        latency_ms: per-frame wall times of the timed runs (may be empty).
    """

    prune: PruneConfig
    ledger: TokenLedger
    macs_full: MacCount
    macs_frame: MacCount
    latency_ms: tuple[float, ...] = ()

    @property
    def latency_median_ms(self) -> float:
        return statistics.median(self.latency_ms) if self.latency_ms else float("nan")


@dataclass(frozen=True)
class ProfileReport:
    """Pruned vs unpruned costs of one variant, measured in one run."""

    model: str
    pruned: ForwardProfile
    unpruned: ForwardProfile
    threads: int
    runs: int
    warmup: int
    environment: dict[str, str] = field(default_factory=dict)

    def ratio(self, what: str) -> float:
        """pruned / unpruned of ``paper_full``, ``complete_full``, ``paper_frame``,
        ``complete_frame``, ``latency`` or ``tokens_average``."""
        if what == "latency":
            return self.pruned.latency_median_ms / self.unpruned.latency_median_ms
        if what == "tokens_average":
            return self.pruned.ledger.average_visual / self.unpruned.ledger.average_visual
        convention, scope = what.split("_")
        a = getattr(getattr(self.pruned, f"macs_{scope}"), convention)
        b = getattr(getattr(self.unpruned, f"macs_{scope}"), convention)
        return a / b

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts, MACs in both conventions, latencies, ratios, environment)."""

        def side(p: ForwardProfile) -> dict[str, Any]:
            return {
                "prune": asdict(p.prune),
                "layers": [asdict(lt) | {"visual": lt.visual} for lt in p.ledger.layers],
                "input_visual": p.ledger.input.visual,
                "final_visual": p.ledger.final.visual,
                "average_visual": p.ledger.average_visual,
                "attn_tokens": list(p.macs_frame.attn_tokens),
                "macs": {
                    "paper_full": p.macs_full.paper,
                    "complete_full": p.macs_full.complete,
                    "paper_frame": p.macs_frame.paper,
                    "complete_frame": p.macs_frame.complete,
                },
                "latency_ms": {
                    "median": p.latency_median_ms,
                    "runs": list(p.latency_ms),
                },
            }

        ratios = ["paper_full", "complete_full", "paper_frame", "complete_frame", "tokens_average"]
        if self.pruned.latency_ms and self.unpruned.latency_ms:
            ratios.append("latency")
        return {
            "model": self.model,
            "conventions": {"paper": PAPER_CONVENTION, "complete": COMPLETE_CONVENTION},
            "pruned": side(self.pruned),
            "unpruned": side(self.unpruned),
            "ratios": {r: self.ratio(r) for r in ratios},
            "threads": self.threads,
            "runs": self.runs,
            "warmup": self.warmup,
            "environment": dict(self.environment),
        }


def _environment() -> dict[str, str]:
    return {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def profile_model(
    model: UTPTrack,
    runs: int = 20,
    warmup: int = 3,
    threads: Optional[int] = None,
    seed: int = 0,
) -> ProfileReport:
    """Profile ``model`` as configured (pruned) and with every keep ratio 1.0 (unpruned).

    Both sides use the same weights and inputs (batch 1, CPU). The model's keep ratios are
    restored afterwards.

    Args:
        model: a :class:`~utptrack_ros.models.UTPTrack` (in eval mode for meaningful timings).
        runs: timed per-frame runs per side (0 = MACs and tokens only); warmup: untimed runs.
        threads: torch intra-op threads while profiling (default: leave as is).
        seed: input seed.
    Returns:
        :class:`ProfileReport`.
    """
    config: ModelConfig = model.config
    pruned_cfg: PruneConfig = model.prune
    unpruned_cfg = pruned_cfg.off()
    x = example_inputs(config, batch=1, seed=seed)
    with _threads(threads) as n_threads, torch.inference_mode():
        templates = model.embed_templates(x.static, x.dynamic, x.static_box, x.dynamic_box)

        def full() -> Any:
            return model(x.search, x.static, x.dynamic, x.static_box, x.dynamic_box)

        def frame() -> Any:
            return model.forward_search(x.search, templates)

        sides = {}
        try:
            for label, prune in (("pruned", pruned_cfg), ("unpruned", unpruned_cfg)):
                model.set_prune(prune)
                macs_full, _ = count_macs(model, full)
                macs_frame, out = count_macs(model, frame)
                sides[label] = (prune, out.ledger, macs_full, macs_frame)
            times: list[list[float]] = [[], []]
            if runs > 0:

                def timed(prune: PruneConfig) -> Callable[[], Any]:
                    def fn() -> Any:
                        return model.forward_search(x.search, templates, prune=prune)

                    return fn

                times = measure_latency([timed(pruned_cfg), timed(unpruned_cfg)], runs, warmup)
        finally:
            model.set_prune(pruned_cfg)
    profiles = [ForwardProfile(*sides[label], latency_ms=tuple(t)) for label, t in zip(("pruned", "unpruned"), times)]
    report = ProfileReport(
        model=config.name,
        pruned=profiles[0],
        unpruned=profiles[1],
        threads=n_threads,
        runs=runs,
        warmup=warmup,
        environment=_environment(),
    )
    log.info(
        "%s: paper MACs %.2f G -> %.2f G (x%.3f), tokens %d -> %d",
        config.name,
        report.unpruned.macs_full.paper / 1e9,
        report.pruned.macs_full.paper / 1e9,
        report.ratio("paper_full"),
        report.unpruned.ledger.final.visual,
        report.pruned.ledger.final.visual,
    )
    return report


def profile_variant(
    name: str,
    keep: Optional[float] = None,
    keep_ce: Optional[float] = None,
    keep_dte: Optional[float] = None,
    keep_ste: Optional[float] = None,
    runs: int = 20,
    warmup: int = 3,
    threads: Optional[int] = None,
    seed: int = 0,
) -> ProfileReport:
    """Build registered variant ``name`` (random init) and :func:`profile_model` it.

    Args:
        keep: one keep ratio for CE, DTE and STE at the variant's pruning layers;
            ``keep_ce`` / ``keep_dte`` / ``keep_ste`` override single components.
    """

    torch.manual_seed(seed)
    model = prepare_for_inference(create_model(name))  # as the Tracker runs it
    prune = model.prune.with_keep_ratio(keep, keep, keep)
    prune = prune.with_keep_ratio(keep_ce, keep_dte, keep_ste)
    model.set_prune(prune)
    return profile_model(model, runs=runs, warmup=warmup, threads=threads, seed=seed)


# -- report ----------------------------------------------------------------------------------------


def _schedule(prune: PruneConfig) -> str:
    parts = []
    for comp in ("ce", "dte", "ste"):
        items = getattr(prune, comp)
        if items:
            ratios = sorted({r for _, r in items})
            ratio = "/".join(f"{r:g}" for r in ratios)
            parts.append(f"{comp.upper()}@{','.join(str(layer) for layer, _ in items)} keep {ratio}")
    return "; ".join(parts) or "no pruning layers"


def format_report(report: ProfileReport) -> str:
    """Readable table: per-layer tokens, MACs in both conventions, latency, ratios."""
    p, u = report.pruned, report.unpruned
    lines = [
        f"model {report.model!r}: {_schedule(p.prune)}"
        + (f"; TTA {p.prune.tta_mode}" if p.prune.ste else ""),
        f"batch 1, cpu, {report.threads} torch thread(s), torch {report.environment.get('torch', '?')}",
        "",
        f"{'layer':>5} | {'SR':>4} | {'ST':>4} | {'DT':>4} | {'visual':>6} | {'attn N':>6}",
        f"{'in':>5} | {p.ledger.input.sr:>4} | {p.ledger.input.st:>4} | {p.ledger.input.dt:>4} | "
        f"{p.ledger.input.visual:>6} |",
    ]
    attn = list(p.macs_frame.attn_tokens) + [0] * len(p.ledger.layers)
    for lt, n in zip(p.ledger.layers, attn):
        lines.append(f"{lt.layer:>5} | {lt.sr:>4} | {lt.st:>4} | {lt.dt:>4} | {lt.visual:>6} | {n:>6}")
    drop = 1.0 - p.ledger.final.visual / p.ledger.input.visual
    lines += [
        "",
        f"visual tokens {p.ledger.input.visual} -> {p.ledger.final.visual} (-{100 * drop:.1f} %), "
        f"average per layer {p.ledger.average_visual:.1f} (unpruned {u.ledger.average_visual:.1f})",
        "",
        f"{'MACs (G)':<36} {'pruned':>9} {'unpruned':>9} {'ratio':>7}",
    ]
    rows = [
        ("paper, full forward", p.macs_full.paper, u.macs_full.paper, "paper_full"),
        ("complete, full forward", p.macs_full.complete, u.macs_full.complete, "complete_full"),
        ("paper, per frame (forward_search)", p.macs_frame.paper, u.macs_frame.paper, "paper_frame"),
        ("complete, per frame (forward_search)", p.macs_frame.complete, u.macs_frame.complete, "complete_frame"),
    ]
    for label, a, b, key in rows:
        lines.append(f"{label:<36} {a / 1e9:>9.2f} {b / 1e9:>9.2f} {report.ratio(key):>7.3f}")
    if p.latency_ms and u.latency_ms:
        lat = report.ratio("latency")
        lines += [
            "",
            f"{'latency per frame (ms, median of ' + str(report.runs) + ')':<36} "
            f"{p.latency_median_ms:>9.2f} {u.latency_median_ms:>9.2f} {lat:>7.3f}",
            f"latency ratio {lat:.3f} vs MAC ratio {report.ratio('paper_frame'):.3f} (paper, per frame), "
            f"{report.ratio('complete_frame'):.3f} (complete)",
        ]
    lines += ["", f"paper    = {PAPER_CONVENTION}", f"complete = {COMPLETE_CONVENTION}"]
    return "\n".join(lines)


# -- CLI verb ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``utptrack profile``."""
    parser.add_argument("--config", "--model", dest="model", default="o256", help="registered variant (default o256)")
    parser.add_argument("--keep", type=float, default=None, help="one keep ratio for CE, DTE and STE")
    parser.add_argument("--keep-ce", type=float, default=None, help="keep ratio of the search region (CE)")
    parser.add_argument("--keep-dte", type=float, default=None, help="keep ratio of the dynamic template")
    parser.add_argument("--keep-ste", type=float, default=None, help="keep ratio of the static template")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per side (0 = no timing)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per side first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")


def run(args: argparse.Namespace) -> int:
    """Execute ``utptrack profile``: print the table, optionally write JSON."""
    report = profile_variant(
        args.model,
        keep=args.keep,
        keep_ce=args.keep_ce,
        keep_dte=args.keep_dte,
        keep_ste=args.keep_ste,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        seed=args.seed,
    )
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":  # python -m, same as `utptrack profile`
    from utptrack_ros.cli import main

    sys.exit(main(["profile", *sys.argv[1:]]))
