"""Training recipes: every named recipe loads, the default is the shipped model's, archived ones
still load by name."""
from __future__ import annotations

import argparse
import logging

import pytest

from utptrack_ros.checkpoint import read_checkpoint
from utptrack_ros.errors import ConfigError
from utptrack_ros.models import VARIANTS, shipped_weights
from utptrack_ros.train import cli
from utptrack_ros.train.recipe import archived_recipes, load_recipe, named_recipes, recipe_to_mapping


def test_every_recipe_loads_and_names_a_known_model():
    names = named_recipes() + archived_recipes()
    assert {"tiny", "tiny_onestage"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.model in VARIANTS, name
        assert 0 < recipe.optim.stem_trainable_from <= 14, name


def test_utptrack_train_defaults_to_the_shipped_models_recipe():
    """Without --recipe, `utptrack train` resolves to the recipe stored in the shipped weights."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--out", "runs/unused"])
    stored = read_checkpoint(shipped_weights("tiny")).info["recipe"]
    assert recipe_to_mapping(load_recipe(args.recipe)) == stored


def test_archived_recipes_load_by_name_with_a_warning(caplog):
    assert set(archived_recipes()) == {"tiny", "tiny_ft", "tiny_ft2", "tiny_ft3"}
    assert not set(archived_recipes()) & set(named_recipes())
    with caplog.at_level(logging.WARNING, logger="utptrack_ros.train.recipe"):
        recipe = load_recipe("tiny_ft2")
    assert recipe.init_from == "runs/tiny_ft/final.safetensors" and recipe.data.first_sequence == 4000
    assert "'tiny_ft2' is archived" in caplog.text and "'tiny_onestage'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utptrack_ros.train.recipe"):
        load_recipe("tiny_onestage")
    assert not caplog.records
    with pytest.raises(ConfigError, match=r"'no_such_recipe': no such file .*archived: \['tiny', 'tiny_ft'"):
        load_recipe("no_such_recipe")
