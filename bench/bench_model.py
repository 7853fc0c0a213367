"""Pruned vs unpruned cost of the model on CPU: MACs and measured latency, as ratios from one run.

For each variant (default ``o256`` and ``tiny``, random init, batch 1) it prints the paper-
convention MACs (method.md 9.3: Linear + Conv, per tracked frame) and the median per-frame
latency of ``forward_search`` with the variant's keep ratios and with every ratio 1.0 (same
weights, interleaved runs), and checks the target

    latency ratio <= MAC ratio + 0.05

When a target is missed (or with ``--breakdown``) it times the parts of the frame (stem, each
encoder block, head, rest) pruned vs unpruned. It also reports what the pruning machinery costs
by itself (explicit attention probabilities,
scoring, sort, gather, concatenation: the unpruned model forced through the pruning path with
nothing removed) and, for the variants in ``--ort``, the same ratio through onnxruntime.
Results go to ``artifacts/bench/bench_model.json`` with device, threads and versions.

Threads default to 1: on a shared 2-core machine two OpenMP threads competing with other
processes make every parallel op wait for a descheduled thread, which swamps the measurement.

    .venv/bin/python bench/bench_model.py [--models o256 tiny] [--runs 15] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import onnxruntime
import torch

from utptrack_ros.machine import machine_record
from utptrack_ros.models import create_model
from utptrack_ros.models.inference import prepare_for_inference
from utptrack_ros.models.examples import example_inputs
from utptrack_ros.profiling import count_macs, format_report, measure_latency, profile_model
from utptrack_ros.runtime import OrtBackend, export_onnx

ROOT = Path(__file__).resolve().parents[1]
TARGET_MARGIN = 0.05


def machinery_overhead(model: torch.nn.Module, runs: int, warmup: int) -> dict[str, float]:
    """Median latency of the unpruned model with and without the pruning path forced on."""

    x = example_inputs(model.config)
    off = model.prune.off()
    with torch.inference_mode():
        tokens = model.embed_templates(x.static, x.dynamic, x.static_box, x.dynamic_box)

    def run(force: bool) -> Any:
        model.force_reorder = force
        return model.forward_search(x.search, tokens, prune=off)

    try:
        plain, forced = measure_latency([lambda: run(False), lambda: run(True)], runs, warmup)
    finally:
        model.force_reorder = False
    a, b = statistics.median(plain), statistics.median(forced)
    return {"unpruned_ms": a, "unpruned_forced_pruning_path_ms": b, "overhead_ms": b - a, "overhead_fraction": b / a - 1}


def component_breakdown(model: torch.nn.Module, runs: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median ms per component (stem, each block, head, rest) for pruned and unpruned frames.

    Forward hooks time the search-crop stem, every encoder block and the box head; "rest" is
    the frame minus those (final norm, restoration, decoding). Sides are interleaved run by run.
    """

    x = example_inputs(model.config)
    with torch.inference_mode():
        tokens = model.embed_templates(x.static, x.dynamic, x.static_box, x.dynamic_box)
    parts = {"stem": model.backbone.patch_embed, "head": model.box_head}
    parts.update({f"block{i}": blk for i, blk in enumerate(model.backbone.blocks)})
    start: dict[str, float] = {}
    current: dict[str, float] = {}
    handles = []
    for key, module in parts.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, k=key: start.__setitem__(k, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, a, o, k=key: current.__setitem__(k, time.perf_counter() - start[k])))
    sides = {"pruned": model.prune, "unpruned": model.prune.off()}
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in sides}
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                for label, prune in sides.items():
                    current.clear()
                    t0 = time.perf_counter()
                    model.forward_search(x.search, tokens, prune=prune)
                    total = time.perf_counter() - t0
                    if i < warmup:
                        continue
                    row = dict(current, rest=total - sum(current.values()), total=total)
                    for key, value in row.items():
                        samples[label].setdefault(key, []).append(value * 1e3)
    finally:
        for h in handles:
            h.remove()
    return {label: {k: statistics.median(v) for k, v in d.items()} for label, d in samples.items()}


def fixed_part_macs(model: torch.nn.Module) -> dict[str, int]:
    """Paper-convention MACs of the parts pruning cannot shrink: search stem and box head."""

    c = model.config
    x = example_inputs(c)
    stem, head = model.backbone.patch_embed, model.box_head
    stem_macs, _ = count_macs(stem, lambda: stem(x.search))
    head_macs, _ = count_macs(head, lambda: head(torch.zeros(1, c.embed_dim, c.search_grid, c.search_grid)))
    return {"stem": stem_macs.paper, "head": head_macs.paper}


def ort_ratio(model: torch.nn.Module, runs: int, warmup: int, threads: int) -> dict[str, float]:
    """Per-frame latency of the exported pruned and unpruned graphs in onnxruntime."""

    x = example_inputs(model.config)
    crops = (x.static.numpy(), x.dynamic.numpy(), x.static_box.numpy(), x.dynamic_box.numpy())
    with tempfile.TemporaryDirectory() as tmp:
        backends = []
        for label, prune in (("pruned", model.prune), ("unpruned", model.prune.off())):
            export_onnx(model, Path(tmp) / label, prune=prune)
            backend = OrtBackend(Path(tmp) / label, threads=threads)
            backends.append((backend, backend.embed_templates(*crops)))
        search = x.search.numpy()
        for _ in range(warmup):
            for backend, tokens in backends:
                backend.forward_search(search, tokens)
        times: list[list[float]] = [[], []]
        for _ in range(runs):
            for i, (backend, tokens) in enumerate(backends):
                t0 = time.perf_counter()
                backend.forward_search(search, tokens)
                times[i].append((time.perf_counter() - t0) * 1e3)
    p, u = statistics.median(times[0]), statistics.median(times[1])
    return {"pruned_ms": p, "unpruned_ms": u, "ratio": p / u, "onnxruntime": onnxruntime.__version__}


def bench(name: str, runs: int, warmup: int, threads: int, ort: bool, breakdown: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    model = prepare_for_inference(create_model(name))  # BN folded, channels-last: as the Tracker runs it
    report = profile_model(model, runs=runs, warmup=warmup, threads=threads)
    print(format_report(report))
    result = report.to_dict()
    mac_ratio, lat_ratio = report.ratio("paper_frame"), report.ratio("latency")
    result["target"] = {
        "rule": "latency ratio <= paper MAC ratio (per frame) + 0.05",
        "mac_ratio": mac_ratio,
        "latency_ratio": lat_ratio,
        "limit": mac_ratio + TARGET_MARGIN,
        "met": lat_ratio <= mac_ratio + TARGET_MARGIN,
    }
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result["pruning_machinery"] = machinery_overhead(model, runs, warmup)
        if breakdown or not result["target"]["met"]:
            result["breakdown_ms"] = component_breakdown(model, runs, warmup)
            result["fixed_macs"] = fixed_part_macs(model)
            p, u = result["breakdown_ms"]["pruned"], result["breakdown_ms"]["unpruned"]
            frame_macs = result["unpruned"]["macs"]["paper_frame"]
            print(f"\nwhere the time goes ({name}, median ms per frame)")
            print(f"{'part':>8} {'pruned':>9} {'unpruned':>9} {'ratio':>6} {'time share':>11} {'MAC share':>10}")
            for key in u:
                mac_share = result["fixed_macs"].get(key)
                macs = f"{100 * mac_share / frame_macs:9.1f}%" if mac_share is not None else ""
                print(f"{key:>8} {p[key]:9.2f} {u[key]:9.2f} {p[key] / u[key]:6.3f} "
                      f"{100 * u[key] / u['total']:10.1f}% {macs:>10}")
    finally:
        torch.set_num_threads(old)
    if ort:
        result["onnxruntime"] = ort_ratio(model, runs, warmup, threads)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["o256", "tiny"])
    parser.add_argument("--runs", type=int, default=None, help="timed runs per side (default 15 for o*, 60 otherwise)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ort", nargs="*", default=["tiny"], help="variants also timed through onnxruntime")
    parser.add_argument("--breakdown", action="store_true",
                        help="time stem / blocks / head for every model (always done when a target is missed)")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench" / "bench_model.json")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    for name in args.models:
        runs = args.runs if args.runs is not None else (15 if name.startswith("o") else 60)
        print(f"\n==== {name} ({runs} runs, {args.threads} thread(s))")
        results[name] = bench(name, runs, args.warmup, args.threads, ort=name in args.ort,
                              breakdown=args.breakdown)

    print("\nmodel | MACs G pruned/unpruned (paper, per frame) | MAC ratio | latency ms pruned/unpruned | "
          "latency ratio | target")
    for name, r in results.items():
        m, t = r["pruned"]["macs"], r["target"]
        u = r["unpruned"]["macs"]
        lat_p, lat_u = r["pruned"]["latency_ms"]["median"], r["unpruned"]["latency_ms"]["median"]
        verdict = "MET" if t["met"] else "MISSED"
        print(f"{name:>5} | {m['paper_frame'] / 1e9:7.2f} / {u['paper_frame'] / 1e9:7.2f} | {t['mac_ratio']:.3f} | "
              f"{lat_p:8.2f} / {lat_u:8.2f} | {t['latency_ratio']:.3f} | <= {t['limit']:.3f} {verdict}")
        mach = r["pruning_machinery"]
        print(f"      pruning machinery at full token count: +{mach['overhead_ms']:.2f} ms "
              f"({100 * mach['overhead_fraction']:.1f} % of the unpruned frame)")
        if "onnxruntime" in r:
            o = r["onnxruntime"]
            o["met"] = o["ratio"] <= t["limit"]
            print(f"      onnxruntime (Tracker backend='onnxruntime', the CPU presets' runtime): "
                  f"{o['pruned_ms']:.2f} / {o['unpruned_ms']:.2f} ms | {o['ratio']:.3f} | <= {t['limit']:.3f} "
                  f"{'MET' if o['met'] else 'MISSED'}")

    out = {
        "device": "cpu",
        "environment": machine_record(),
        "threads": args.threads,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
