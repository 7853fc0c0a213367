"""Official OSTrack-layout files: the variant comes from the file's own content; ``utptrack convert``.

OSTrack (CE / no-CE) and UTPTrack-O state dicts have identical keys and shapes; the containers
the official trainers write differ in ``net_type`` and in the pickled ``settings`` object
(``script_name``, ``config_name``, ``output_sz``). The containers here are written with
``torch.save`` from classes living in ``lib.train.admin.*`` modules that exist only while saving
(``test_checkpoint.official_classes``), as users' files come without the official repository.
"""
from __future__ import annotations

import logging

import pytest
import torch

from test_checkpoint import official_classes, official_container, random_state_dict, table_shapes  # noqa: F401
from utptrack_ros.checkpoint import infer_variant, load_model, read_checkpoint
from utptrack_ros.cli import main as cli_main
from utptrack_ros.convert import convert_checkpoint
from utptrack_ros.errors import CheckpointError


def _minimal_net(search_tokens: int) -> dict:
    """Enough of an OSTrack-layout state dict for the variant decision (size from pos_embed_x)."""
    return {"backbone.pos_embed_x": torch.zeros(1, search_tokens, 8), "box_head.conv5_ctr.bias": torch.zeros(1)}


def _settings(Settings, script, config, output_sz=None):
    s = Settings()
    s.script_name, s.config_name = script, config
    if output_sz is not None:
        s.output_sz = output_sz
    return s


@pytest.mark.parametrize(
    "net_type, script, config, tokens, expected",
    [
        ("OSTrack", "ostrack", "vitb_256_mae_ce_32x4_ep300", 256, "ostrack256"),
        ("OSTrack", "ostrack", "vitb_256_mae_32x4_ep300", 256, "ostrack256_noce"),
        ("OSTrack", "ostrack", "vitb_384_mae_ce_32x4_got10k_ep100", 576, "ostrack384"),
        ("OSTrack", "ostrack", "vitb_384_mae_32x4_ep300", 576, "ostrack384_noce"),
        ("OSTrackCMP", "ostrackcmp", "ceatetta_256_r7_all", 256, "o256"),
        ("OSTrackCMP", "ostrackcmp", "utptrack_384_r7_all", 576, "o384"),
        (None, "ostrackcmp", "ceatetta_256_r7_all", 256, "o256"),  # settings alone decide
        ("OSTrackCMP", None, None, 576, "o384"),  # net_type alone decides
    ],
)
def test_variant_comes_from_the_containers_metadata(tmp_path, official_classes, net_type, script, config, tokens, expected):
    Settings, _, remove_modules = official_classes
    container = {"net": _minimal_net(tokens), "epoch": 300}
    if net_type is not None:
        container["net_type"] = net_type
    if script is not None:
        container["settings"] = _settings(Settings, script, config, {"template": 128, "search": 16 * int(tokens**0.5)})
    path = tmp_path / "ckpt.pth.tar"
    torch.save(container, path)
    remove_modules()
    ckpt = read_checkpoint(path)
    assert infer_variant(ckpt.state_dict, ckpt.info) == expected


def test_a_file_without_metadata_runs_as_ostrack_with_a_warning(tmp_path, caplog):
    path = tmp_path / "bare.pth.tar"
    torch.save({"net": _minimal_net(576)}, path)
    ckpt = read_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="utptrack_ros.official"):
        assert infer_variant(ckpt.state_dict, ckpt.info) == "ostrack384"
    assert "assumed OSTrack" in caplog.text and "ostrack384_noce / o384" in caplog.text


def test_unknown_config_names_are_reported_with_the_assumption(tmp_path, official_classes, caplog):
    Settings, _, remove_modules = official_classes
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"net": _minimal_net(256), "net_type": "OSTrackCMP",
                "settings": _settings(Settings, "ostrackcmp", "ce_256_r7")}, path)
    remove_modules()
    ckpt = read_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="utptrack_ros.official"):
        assert infer_variant(ckpt.state_dict, ckpt.info) == "o256"
    assert "'ce_256_r7' is not a released UTPTrack-O config" in caplog.text


@pytest.mark.parametrize(
    "net_type, script, output_sz, match",
    [
        ("OSTrack", "ostrackcmp", None, "contradicts"),
        ("OSTrack", "ostrack", {"template": 192, "search": 384}, "output_sz says search 384"),
    ],
)
def test_contradicting_metadata_is_refused(tmp_path, official_classes, net_type, script, output_sz, match):
    Settings, _, remove_modules = official_classes
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"net": _minimal_net(256), "net_type": net_type,
                "settings": _settings(Settings, script, "vitb_256_mae_ce_32x4_ep300", output_sz)}, path)
    remove_modules()
    ckpt = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=match):
        infer_variant(ckpt.state_dict, ckpt.info)


def test_convert_strips_a_training_checkpoint_to_a_loadable_weights_file(tmp_path, official_classes):
    """A UTPTrack-O training state (weights + AdamW moments + pickled settings) -> weights +
    config; the result loads as the same variant with identical weights, also as float16."""
    Settings, StatValue, remove_modules = official_classes
    net = random_state_dict(table_shapes("o256"), seed=5)
    container = official_container(net, Settings, StatValue)  # OSTrackCMP / ceatetta_256_r7_all
    # the optimizer moments of every parameter, as the released 1.1 GB files carry
    container["optimizer"]["state"] = {i: {"exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                                       for i, v in enumerate(net.values()) if v.is_floating_point()}
    src = tmp_path / "OSTrackCMP_ep0300.pth.tar"
    torch.save(container, src)
    remove_modules()

    dst = tmp_path / "o256.safetensors"
    assert cli_main(["convert", str(src), str(dst)]) == 0
    assert dst.stat().st_size < 0.4 * src.stat().st_size  # no optimizer state
    loaded = load_model(dst)
    assert loaded.config.name == "o256" and loaded.config.num_templates == 2
    state = loaded.state_dict()
    assert set(state) == set(net)
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in net.items())
    meta = read_checkpoint(dst).info
    assert meta["converted_from"] == src.name and meta["net_type"] == "OSTrackCMP"
    assert meta["settings.config_name"] == "ceatetta_256_r7_all" and meta["variant"] == "o256"

    half = tmp_path / "o256_half.safetensors"
    convert_checkpoint(src, half, half=True)
    assert half.stat().st_size < 0.55 * dst.stat().st_size
    loaded_half = load_model(half)
    assert next(loaded_half.parameters()).dtype == torch.float32  # float16 values, float32 model
    key = "backbone.blocks.0.attn.qkv.weight"
    assert torch.equal(loaded_half.state_dict()[key], net[key].half().float())
    assert read_checkpoint(half).info["dtype"] == "float16"


def test_convert_refuses_to_overwrite_its_input(tmp_path):
    path = tmp_path / "w.pth.tar"
    torch.save({"net": _minimal_net(256)}, path)
    with pytest.raises(CheckpointError, match="overwrite the input"):
        convert_checkpoint(path, path)


def _minimal_s_net(rows: int, width: int = 512) -> dict:
    return {"encoder.body.pos_embed": torch.zeros(1, rows, width), "decoder.conv5_ctr.bias": torch.zeros(1)}


@pytest.mark.parametrize(
    "net_type, script, config, rows, expected",
    [
        ("SUTRACK", "sutrack", "sutrack_b224", 245, "sutrack_b224"),
        ("SUTRACK", "sutrack", "sutrack_b384", 720, "sutrack_b384"),
        ("SUTRACKCMP", "sutrackcmp", "ceatettamma_b224", 245, "s224"),
        ("SUTRACKCMP", None, None, 720, "s384"),
        (None, None, None, 245, "sutrack_b224"),  # no metadata: the layout's own family, logged
    ],
)
def test_s_family_variant_comes_from_the_file(tmp_path, official_classes, net_type, script, config, rows, expected):
    Settings, _, remove_modules = official_classes
    container = {"net": _minimal_s_net(rows)}
    if net_type is not None:
        container["net_type"] = net_type
    if script is not None:
        container["settings"] = _settings(Settings, script, config)
    path = tmp_path / "ckpt.pth.tar"
    torch.save(container, path)
    remove_modules()
    ckpt = read_checkpoint(path)
    assert ckpt.source == "sutrack"
    assert infer_variant(ckpt.state_dict, ckpt.info) == expected


def test_s_family_width_selects_the_fast_itpn_size(tmp_path):
    for rows, width, expected in ((245, 384, "sutrack_t224"), (245, 768, "sutrack_l224"), (720, 768, "sutrack_l384")):
        path = tmp_path / f"{expected}.pth.tar"
        torch.save({"net": _minimal_s_net(rows, width=width)}, path)
        ckpt = read_checkpoint(path)
        assert infer_variant(ckpt.state_dict, ckpt.info) == expected
    path = tmp_path / "t384.pth.tar"
    torch.save({"net": _minimal_s_net(720, width=384)}, path)  # Fast-iTPN-T is released at 224 only
    ckpt = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no registered Fast-iTPN variant"):
        infer_variant(ckpt.state_dict, ckpt.info)
    path = tmp_path / "s_l224.pth.tar"
    torch.save({"net": _minimal_s_net(245, width=768), "net_type": "SUTRACKCMP"}, path)
    ckpt = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="UTPTrack-S is released with Fast-iTPN-B"):
        infer_variant(ckpt.state_dict, ckpt.info)
