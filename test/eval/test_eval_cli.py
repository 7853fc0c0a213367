"""``utptrack eval-offline`` end to end: generated folders and a real rosbag2 bag, spawned workers."""

from __future__ import annotations

import argparse
import json

import pytest

from utptrack_ros import cli as top_cli
from utptrack_ros.data import SequenceSpec, generate, write_bag, write_folder
from utptrack_ros.errors import ConfigError
from utptrack_ros.eval import cli
from utptrack_ros.eval.specs import parse_keep_ratio
from utptrack_ros.replay import cli as replay_cli
from utptrack_ros.types import Modality


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    spec = dict(length=10, size=(128, 96), modalities=(Modality.DEPTH,))
    folders = root / "folders"
    for seed, name in ((31, "f1"), (32, "f2")):
        write_folder(generate(SequenceSpec(seed=seed, name=name, challenges={"fast_motion": 0.5}, **spec)), folders)
    (folders / "list.txt").write_text("f1\nf2\n")
    bag = root / "bag_b1"
    write_bag(generate(SequenceSpec(seed=33, name="b1", **spec)), bag)
    return folders, bag


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_eval_offline_on_folders_and_a_bag(sources, tmp_path, capsys):
    folders, bag = sources
    out = tmp_path / "out"
    argv = [
        "eval-offline",
        str(folders),
        str(bag),
        "--trackers",
        "csrt,kcf",
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]
    assert top_cli.main(argv) == 0  # through the project's entry point
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split()[:3] == ["Tracker", "AUC", "P@20px"]
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["sequences"]) == ["b1", "f1", "f2"]
    assert results["sequences"]["b1"]["source"] == str(bag)
    for row, name in zip(lines[2:4], ("csrt", "kcf")):
        assert row.split()[0] == name
        assert row.split()[1] == f"{results['results'][name]['overall']['auc']:.1f}"
    assert results["results"]["kcf"]["per_attribute"]["fast_motion"]["sequences"] == ["f1", "f2"]
    assert (out / "report.html").is_file() and (out / "plots" / "strip_b1.png").is_file()

    # a second run into the same folder is refused, and says how to proceed
    assert top_cli.main(argv) == 1
    assert "--force" in capsys.readouterr().err


def test_bad_inputs_exit_1_with_a_message(sources, tmp_path, capsys):
    folders, _ = sources
    assert cli.run(_parse([str(folders), "--trackers", "csrt,bogus", "--out", str(tmp_path / "o")])) == 1
    assert "unknown tracker 'bogus'" in capsys.readouterr().err
    assert cli.run(_parse([str(tmp_path), "--trackers", "kcf", "--out", str(tmp_path / "o")])) == 1
    assert "no sequence folders" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse([str(folders), "--out", "o", "--keep", "1.5"])
    with pytest.raises(SystemExit):
        _parse([str(folders), "--out", "o", "--aux", "lidar"])
    assert not (tmp_path / "o").exists()


def test_sweep_rows():
    specs = cli.tracker_specs(["tiny", "tiny_base", "mil"], [0.5, None], ["auto", "none"], "both", random_weights=True)
    names = [s.name for s in specs]
    assert names[:4] == ["tiny@k0.5", "tiny@k0.5+prompt", "tiny@k0.5/none", "tiny@k0.5/none+prompt"]
    assert "tiny" in names and "tiny/none+prompt" in names
    assert [n for n in names if n.startswith("tiny_base")] == [
        "tiny_base",
        "tiny_base+prompt",
        "tiny_base/none",
        "tiny_base/none+prompt",  # no keep sweep: unpruned
    ]
    assert names[-1] == "mil" and len(names) == 8 + 4 + 1
    by_name = {s.name: s for s in specs}
    assert by_name["tiny@k0.5/none+prompt"].aux == "none" and by_name["tiny@k0.5/none+prompt"].use_prompt
    assert by_name["tiny@k0.5"].factory.keep == 0.5 and not by_name["tiny@k0.5"].factory.pretrained
    assert "RANDOM WEIGHTS" in by_name["tiny"].description


def test_keep_ratios_are_parsed_by_the_shared_parser():
    """``--keep`` of eval-offline and of ``utptrack eval`` both go through ``specs.parse_keep_ratio``."""

    assert parse_keep_ratio("0.5") == 0.5 and parse_keep_ratio("1") == 1.0
    for bad in ("0", "-0.2", "1.5", "nan", "half"):
        with pytest.raises(ConfigError, match="keep ratio"):
            parse_keep_ratio(bad)
    assert _parse(["x", "--out", "o", "--keep", "0.5,default,0.7"]).keep == [0.5, None, 0.7]
    replay = argparse.ArgumentParser()
    replay_cli.add_arguments(replay)
    assert replay.parse_args(["bag", "--out", "o", "--keep", "0.25"]).keep == 0.25
    for bad in ("0", "1.5", "half"):
        with pytest.raises(SystemExit):
            _parse(["x", "--out", "o", "--keep", bad])
        with pytest.raises(SystemExit):
            replay.parse_args(["bag", "--out", "o", "--keep", bad])
