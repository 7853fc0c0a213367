"""``utptrack demo``: cached demo bags, the shipped-model check, and the whole main job on a small set."""
from __future__ import annotations

import argparse
import json

import pytest
from replay_helpers import domain_id

import utptrack_ros.models as models
from utptrack_ros import demo
from utptrack_ros import replay as R
from utptrack_ros.eval.report import format_cell
from utptrack_ros.types import Modality


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_demo_bags_are_made_once_and_remade_when_the_recipe_changes(tmp_path):
    folder = tmp_path / "bags"
    recipe = demo.demo_recipe(2, 4, (64, 48))
    bags = demo.ensure_bags(folder, recipe, progress=False)
    assert [b.name for b in bags] == ["test_200000", "test_200001"]
    opened = [R.open_bag(b) for b in bags]
    assert [b.modality for b in opened] == [Modality.DEPTH, Modality.THERMAL]
    assert all(b.sequence.length == 4 and b.use_prompt for b in opened)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert demo.ensure_bags(folder, recipe, progress=False) == bags
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == mtimes  # reused as is
    longer = demo.ensure_bags(folder, demo.demo_recipe(2, 5, (64, 48)), progress=False)
    assert R.open_bag(longer[0]).sequence.length == 5
    assert json.loads((folder / "recipe.json").read_text())["recipe"]["length"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bags"]  # no temporary folders left


def test_demo_says_when_the_shipped_model_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models, "shipped_weights", lambda name: None)
    assert demo.run(_args("--workdir", str(tmp_path), "--no-progress")) == 1
    assert "utptrack_ros/weights/tiny.safetensors is missing" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


@pytest.mark.ros
def test_demo_end_to_end_on_a_small_set(tmp_path, capsys):
    pytest.importorskip("rclpy")
    args = _args("--workdir", str(tmp_path), "--sequences", "1", "--length", "10", "--size", "320x240",
                 "--weights", "random", "--compare", "unpruned,csrt", "--domain-id", str(domain_id("demo")),
                 "--no-progress")
    assert demo.run(args) == 0
    printed = capsys.readouterr().out
    report = tmp_path / "report"
    for name in ("report.md", "report.html", "report.json", "results.json", "plots/curves.png",
                 "plots/latency_hist.png", "plots/iou_test_200000.png", "plots/strip_test_200000.png"):
        assert (report / name).is_file(), name
    results = json.loads((report / "results.json").read_text())
    rows = {r["tracker"]: r for r in json.loads((report / "report.json").read_text())["tables"]["summary"]["rows"]}
    assert list(rows) == ["tiny@node", "tiny_unpruned", "csrt"]
    assert results["settings"]["bags"]["test_200000"]["answered"] == 9
    header = next(row for row in printed.splitlines() if row.startswith("Tracker"))
    columns = header.split()
    assert columns[:5] == ["Tracker", "AUC", "P@20px", "NP@0.2", "AO"] and "Kept" in columns
    for name, row in rows.items():
        line = next(row for row in printed.splitlines() if row.split() and row.split()[0] == name)
        cells = line.split()
        assert cells[1:5] == [format_cell(row[k], 1) for k in ("auc", "precision", "norm_precision", "ao")]
        assert cells[5] == format_cell(row["fps"], 1)
    assert rows["tiny_unpruned"]["kept_tokens_pct"] == pytest.approx(100.0)
    assert rows["tiny@node"]["kept_tokens_pct"] < 100.0
    assert "report:" in printed and str(report / "report.html") in printed
