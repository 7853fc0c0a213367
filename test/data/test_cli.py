"""``utptrack generate`` arguments and output (folders, list.txt, bags)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from utptrack_ros.data import Challenge, load_bag, load_folder
from utptrack_ros.data import cli


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_generate_writes_folders_list_and_bags(tmp_path, capsys):
    args = parse(["--split", "val", "--start", "3", "--count", "2", "--length", "4", "--size", "96x72",
                  "--challenges", "darkness,distractors=0.5", "--bags", "sqlite3", "--out", str(tmp_path)])
    assert cli.run(args) == 0
    assert (tmp_path / "list.txt").read_text().split() == ["val_100003", "val_100004"]
    seq = load_folder(tmp_path / "val_100003")
    assert seq.length == 4 and seq.image_size == (96, 72)
    assert seq.attributes["challenges"] == {"darkness": 1.0, "distractors": 0.5}
    bag = load_bag(tmp_path / "bags" / "sqlite3" / "val_100004")
    np.testing.assert_allclose(bag.gt, load_folder(tmp_path / "val_100004").gt, atol=1e-3, equal_nan=True)
    assert "2 sequences, 8 frames" in capsys.readouterr().out
    assert cli.run(args) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def test_argument_parsing():
    args = parse(["--out", "x", "--challenges", "none", "--modalities", "thermal", "--seeds", "5,6"])
    specs = cli.specs_from_args(args)
    assert [s.seed for s in specs] == [5, 6] and all(s.challenges == () for s in specs)
    assert specs[0].modalities[0].value == "thermal"
    assert cli.parse_challenges("random") is None
    assert cli.parse_challenges("rotation=0.25") == {Challenge.ROTATION: 0.25}
    with pytest.raises(argparse.ArgumentTypeError, match="unknown challenge"):
        cli.parse_challenges("fog")
    with pytest.raises(argparse.ArgumentTypeError, match="640x480"):
        cli.parse_size("640")
