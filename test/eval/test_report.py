"""Report: Markdown/HTML/terminal numbers are the JSON numbers; plots are real PNGs."""

from __future__ import annotations

import functools
import html
import json
import re

import numpy as np
import pytest
from eval.eval_synthetic import SyntheticSequence
from matplotlib.image import imread

from utptrack_ros.data import SequenceSpec, generate
from utptrack_ros.errors import ConfigError
from utptrack_ros.eval import report as R
from utptrack_ros.eval.offline import run_offline
from utptrack_ros.eval.results import load_results
from utptrack_ros.eval.specs import CoreTrackerFactory, TrackerSpec, peer_spec
from utptrack_ros.types import Modality

# kept short: the random-weight core tracker is the slow part on 2 shared cores
GENERATED = SequenceSpec(
    seed=11, length=8, size=(160, 120), challenges={"scale_change": 0.5}, modalities=(Modality.DEPTH,), name="gen_scale"
)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "res"
    specs = [
        TrackerSpec("tiny@k0.5", CoreTrackerFactory("tiny", keep=0.5, pretrained=False), aux="auto"),
        peer_spec("csrt"),
        peer_spec("kcf"),
    ]
    sources = [
        functools.partial(generate, GENERATED),
        functools.partial(
            SyntheticSequence,
            "synth",
            8,
            seed=6,
            absent_frames=[4, 5],
            attributes={"challenges": {"full_occlusion": 0.8}},
        ),
    ]
    results = run_offline(specs, sources, out, workers=1, max_frames=6, progress=False, report=True)
    return out, results


def _md_table(text: str, heading: str) -> tuple[list[str], list[list[str]]]:
    block = text.split(heading, 1)[1].strip().split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in block.splitlines()]
    assert set(block.splitlines()[1]) <= {"|", "-"}
    return rows[0], rows[2:]


def _expected(value, decimals):
    return "n/a" if value is None else f"{value:.{decimals}f}"


def test_markdown_summary_equals_json(report_run):
    out, results = report_run
    md = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    header, rows = _md_table(md, "## Summary")
    table = data["tables"]["summary"]
    assert header == [c["header"] for c in table["columns"]]
    assert [r[0] for r in rows] == ["tiny@k0.5", "csrt", "kcf"]
    for md_row, js_row in zip(rows, table["rows"]):
        for cell, col in zip(md_row, table["columns"]):
            if col["decimals"] is None:
                assert cell == js_row[col["key"]]
            else:
                assert cell == _expected(js_row[col["key"]], col["decimals"]), col["key"]
        # ... and the JSON rows are the results' own numbers
        overall = results["results"][js_row["tracker"]]["overall"]
        latency = results["results"][js_row["tracker"]]["latency"]
        assert js_row["auc"] == overall["auc"] and js_row["ao"] == overall["ao"]
        assert js_row["norm_precision"] == overall["norm_precision"]
        assert js_row["latency_p95_ms"] == latency["latency_p95_ms"]
        assert js_row["missed_frames"] == overall["num_missed_frames"]
    kept = {r["tracker"]: r["kept_tokens_pct"] for r in table["rows"]}
    assert 0 < kept["tiny@k0.5"] < 80 and kept["csrt"] is None
    assert rows[1][header.index("Kept tok %")] == "n/a"


def test_markdown_attribute_and_sequence_tables_equal_json(report_run):
    out, results = report_run
    md = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    header, rows = _md_table(md, "## Per challenge attribute (AUC)")
    assert [r[0] for r in rows] == ["full_occlusion", "scale_change"]
    for md_row in rows:
        per_attr = results["results"]["csrt"]["per_attribute"][md_row[0]]
        assert md_row[header.index("csrt AUC")] == _expected(per_attr["auc"], 1)
        assert md_row[header.index("Seqs")] == "1"
    header, rows = _md_table(md, "## Per sequence (AUC)")
    js = {r["sequence"]: r for r in data["tables"]["sequences_auc"]["rows"]}
    for md_row in rows:
        seq = md_row[0]
        assert md_row[header.index("kcf AUC")] == _expected(
            results["results"]["kcf"]["per_sequence"][seq]["metrics"]["auc"], 1
        )
        assert md_row[header.index("kcf missed")] == str(js[seq]["kcf/missed"])
    # the Attributes column names the generator's challenges (stored under attributes["challenges"])
    assert {r[0]: r[header.index("Attributes")] for r in rows} == {"gen_scale": "scale_change", "synth": "full_occlusion"}
    assert {s: r["attributes"] for s, r in js.items()} == {"gen_scale": "scale_change", "synth": "full_occlusion"}


def test_html_states_the_environment_and_keeps_the_footnotes(report_run):
    out, results = report_run
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    env = results["environment"]
    assert env["commit"] and env["cpu"] and env["cpu_count"] and env["versions"]["numpy"]
    section = page.split("<h2>Environment</h2>", 1)[1].split("</table>", 1)[0]
    cells = dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", section))
    assert cells["commit"] == env["commit"] and cells["CPU"] == env["cpu"] and cells["CPU cores"] == str(env["cpu_count"])
    assert cells["load average (1/5/15 min, at write)"].startswith(str(env["load_1m"]))
    assert f"numpy {env['versions']['numpy']}" in cells["versions"]
    assert "## Environment" in md
    for note in (R.SUMMARY_NOTE,):
        assert note in md and html.escape(note) in page


def test_environment_rows_name_the_node_backend_and_threads():
    results = {
        "environment": {"cpu": "x", "cpu_count": 2, "versions": {"torch": "2"}, "commit": "abc"},
        "settings": {"node": {"num_threads": 1}, "bags": {
            "a": {"node_status": {"tracker": {"backend": "onnxruntime", "device": "cpu", "model": "tiny"}}},
            "b": {"node_status": {"tracker": {"backend": "onnxruntime", "device": "cpu", "model": "tiny"}}},
        }},
    }
    rows = {r["item"]: r["value"] for r in R.environment_rows(results)}
    assert rows["node backend"] == "onnxruntime on cpu (tiny)"
    assert rows["node torch threads"] == "1" and rows["commit"] == "abc" and rows["versions"] == "torch 2"
    page = R.render_html(R.build_report_data({**results, "trackers": {}, "results": {}, "sequences": {}}))
    assert "<td>node backend</td><td>onnxruntime on cpu (tiny)</td>" in page


def test_html_and_terminal_show_the_same_cells(report_run):
    out, results = report_run
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    summary_html = page.split("<h2>Summary</h2>", 1)[1].split("</table>", 1)[0]
    html_rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in summary_html.split("<tr>")[2:]]
    _, md_rows = _md_table((out / "report.md").read_text(), "## Summary")
    assert html_rows == md_rows
    terminal = R.format_summary_table(results).splitlines()
    assert len(terminal) == 2 + 3
    for line, md_row in zip(terminal[2:], md_rows):
        assert line.split() == md_row


def test_terminal_table_with_chosen_columns_shows_the_full_tables_cells(report_run):
    """The demo prints a subset of the summary columns through the same formatter."""
    _, results = report_run
    keys = ("tracker", "auc", "fps", "missed_frames")
    full = [line.split() for line in R.format_summary_table(results).splitlines()]
    chosen = [line.split() for line in R.format_summary_table(results, keys).splitlines()]
    columns = [c.key for c in R.SUMMARY_COLUMNS]
    assert chosen[0] == ["Tracker", "AUC", "FPS", "Missed"]
    # header words: "Lat mean ms" etc. split into several, so compare the body rows by column index
    for full_row, row in zip(full[2:], chosen[2:]):
        assert row == [full_row[columns.index(k)] for k in keys]
    with pytest.raises(ConfigError, match="unknown summary columns"):
        R.format_summary_table(results, ("tracker", "speed"))


def test_plots_are_real_pngs_referenced_relatively(report_run):
    out, _ = report_run
    data = load_results(out)
    report = json.loads((out / "report.json").read_text())
    plots = report["plots"]
    paths = [plots["curves"], plots["latency"]]
    for files in plots["sequences"].values():
        paths += [files["iou"], files["strip"]]
        assert files["strip_frames"][0] == min(
            data["results"][t]["per_sequence"][s]["metrics"]["init_index"]
            for t in data["trackers"]
            for s in [files["iou"][10:-4]]
        )
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for rel in paths:
        assert not rel.startswith("/") and f"({rel})" in md and f"src='{rel}'" in page
        img = imread(out / rel)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
        assert img[..., :3].std() > 0.01  # not a blank canvas


def test_strip_shades_pruned_tokens(report_run, tmp_path):
    out, results = report_run
    seq = generate(GENERATED)
    with_tokens = tmp_path / "with.png"
    R.plot_frame_strip(results, "gen_scale", seq, out, with_tokens, num_frames=2)
    stripped = json.loads(json.dumps(results))
    stripped["results"]["tiny@k0.5"]["per_sequence"]["gen_scale"]["files"].pop("tokens")
    without = tmp_path / "without.png"
    R.plot_frame_strip(stripped, "gen_scale", seq, out, without, num_frames=2)
    a, b = imread(with_tokens)[..., :3], imread(without)[..., :3]
    assert a.shape == b.shape
    assert a.mean() < b.mean()  # pruned cells are shaded dark


def test_format_cell():
    assert R.format_cell(None, 1) == "n/a" and R.format_cell(float("nan"), 1) == "n/a"
    assert R.format_cell(12.345, 1) == "12.3" and R.format_cell(3, 0) == "3" and R.format_cell("x", None) == "x"
    assert np.isclose(float(R.format_cell(2 / 3 * 100, 1)), 66.7)
