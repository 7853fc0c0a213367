"""Checkpoint I/O: official-format files built from method.md 8.2's key table, safe unpickling,
strict key reports, project safetensors round trips."""
from __future__ import annotations

import collections
import os
import re
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from utptrack_ros.checkpoint import (
    StubObject,
    infer_variant,
    load_model,
    load_state_dict_into,
    load_weights,
    read_checkpoint,
    safe_torch_load,
    save_model,
    sniff_format,
)
from utptrack_ros.errors import CheckpointError
from utptrack_ros.models import create_model

# -- method.md 8.2, transcribed row by row ------------------------------------------------------
_HEAD_WIDTHS = [(256, 768), (128, 256), (64, 128), (32, 64)]  # conv1..conv4 (out, in)

TABLE_8_2: list[tuple[str, tuple[int, ...]]] = [
    ("backbone.cls_token", (1, 1, 768)),
    ("backbone.pos_embed", (1, 197, 768)),
    ("backbone.pos_embed_z", (1, 64, 768)),
    ("backbone.pos_embed_x", (1, 256, 768)),
    ("backbone.patch_embed.proj.weight", (768, 3, 16, 16)),
    ("backbone.patch_embed.proj.bias", (768,)),
    ("backbone.blocks.{0..11}.norm1.{weight,bias}", (768,)),
    ("backbone.blocks.{0..11}.attn.qkv.weight", (2304, 768)),
    ("backbone.blocks.{0..11}.attn.qkv.bias", (2304,)),
    ("backbone.blocks.{0..11}.attn.proj.weight", (768, 768)),
    ("backbone.blocks.{0..11}.attn.proj.bias", (768,)),
    ("backbone.blocks.{0..11}.norm2.{weight,bias}", (768,)),
    ("backbone.blocks.{0..11}.mlp.fc1.weight", (3072, 768)),
    ("backbone.blocks.{0..11}.mlp.fc1.bias", (3072,)),
    ("backbone.blocks.{0..11}.mlp.fc2.weight", (768, 3072)),
    ("backbone.blocks.{0..11}.mlp.fc2.bias", (768,)),
    ("backbone.norm.{weight,bias}", (768,)),
    *[
        row
        for i, (out, cin) in enumerate(_HEAD_WIDTHS, start=1)
        for row in (
            (f"box_head.conv{i}_{{ctr,offset,size}}.0.weight", (out, cin, 3, 3)),
            (f"box_head.conv{i}_{{ctr,offset,size}}.0.bias", (out,)),
            (f"box_head.conv{i}_{{ctr,offset,size}}.1.{{weight,bias,running_mean,running_var}}", (out,)),
            (f"box_head.conv{i}_{{ctr,offset,size}}.1.num_batches_tracked", ()),
        )
    ],
    ("box_head.conv5_ctr.{weight}", (1, 32, 1, 1)),
    ("box_head.conv5_ctr.bias", (1,)),
    ("box_head.conv5_{offset,size}.weight", (2, 32, 1, 1)),
    ("box_head.conv5_{offset,size}.bias", (2,)),
]
O384_CHANGES = {"backbone.pos_embed_z": (1, 144, 768), "backbone.pos_embed_x": (1, 576, 768)}


def _expand(pattern: str) -> list[str]:
    """Brace expansion: ``{0..11}`` ranges and ``{a,b}`` alternatives."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    if ".." in body:
        lo, hi = body.split("..")
        options = [str(i) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [name for opt in options for name in _expand(pattern[: m.start()] + opt + pattern[m.end() :])]


def table_shapes(variant: str = "o256") -> dict[str, tuple[int, ...]]:
    shapes = {name: shape for pattern, shape in TABLE_8_2 for name in _expand(pattern)}
    if variant == "o384":
        shapes.update(O384_CHANGES)
    return shapes


def _is_buffer(name: str) -> bool:
    return name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> collections.OrderedDict:
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(int(torch.randint(1, 10**6, (), generator=g)), dtype=torch.int64)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[name] = torch.randn(shape, generator=g) * 0.02
    return sd


# -- fake official-repo classes, importable only while saving ----------------------------------
_FAKE_MODULES = ("lib", "lib.train", "lib.train.admin", "lib.train.admin.settings", "lib.train.admin.stats")


@pytest.fixture
def official_classes():
    """Classes living in ``lib.train.admin.*`` modules registered only while the test saves."""
    mods = {name: types.ModuleType(name) for name in _FAKE_MODULES}
    saved = {name: sys.modules.get(name) for name in _FAKE_MODULES}

    class Settings:
        def __init__(self) -> None:
            self.script_name = "ostrackcmp"
            self.config_name = "ceatetta_256_r7_all"
            self.env = {"workspace_dir": "/data/ws"}
            self.local_rank = -1

    class StatValue:
        def __init__(self, val: float) -> None:
            self.val = val
            self.history = [val, val / 2]

    for cls, module in ((Settings, "lib.train.admin.settings"), (StatValue, "lib.train.admin.stats")):
        cls.__module__ = module
        cls.__qualname__ = cls.__name__
        setattr(mods[module], cls.__name__, cls)
    sys.modules.update(mods)

    def remove() -> None:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old

    yield Settings, StatValue, remove
    remove()


def official_container(net: dict, Settings: type, StatValue: type) -> dict:
    """What the official trainers save (method.md 8.1), with AdamW moments for a few params."""
    names = [k for k in net if not _is_buffer(k)][:3]
    state = {
        i: {
            "step": torch.tensor(300.0),
            "exp_avg": torch.randn_like(net[k]),
            "exp_avg_sq": torch.rand_like(net[k]),
        }
        for i, k in enumerate(names)
    }
    optimizer = {
        "state": state,
        "param_groups": [
            {"lr": 4e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-4, "amsgrad": False,
             "params": list(range(len(names)))}
        ],
    }
    return {
        "epoch": 300,
        "actor_type": "OSTrackCMPActor",
        "net_type": "OSTrackCMP",
        "net": net,
        "net_info": None,
        "constructor": None,
        "optimizer": optimizer,
        "stats": collections.OrderedDict(train=collections.OrderedDict(Loss=StatValue(0.5))),
        "settings": Settings(),
    }


@pytest.fixture(scope="module")
def o256():
    torch.manual_seed(0)
    return create_model("o256").eval()


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant, n_params", [("o256", 92_518_533), ("o384", 92_825_733)])
def test_table_matches_model_names_shapes_and_param_count(variant, n_params):
    shapes = table_shapes(variant)
    table_params = sum(torch.Size(s).numel() for k, s in shapes.items() if not _is_buffer(k))
    assert table_params == n_params  # the table and method.md's parameter count agree
    model = create_model(variant)
    assert sum(p.numel() for p in model.parameters()) == n_params
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(model_shapes) == set(shapes), (
        f"only in model: {sorted(set(model_shapes) - set(shapes))[:5]}, "
        f"only in table: {sorted(set(shapes) - set(model_shapes))[:5]}"
    )
    assert model_shapes == shapes


def test_official_training_file_loads_strictly_without_repo_classes(tmp_path, o256, official_classes):
    Settings, StatValue, remove_modules = official_classes
    net = random_state_dict(table_shapes("o256"), seed=1)
    container = official_container(net, Settings, StatValue)
    path = tmp_path / "OSTrackCMP_ep0300.pth.tar"
    torch.save(container, path)
    remove_modules()  # the official repo is not importable when users load the file
    assert "lib.train.admin.settings" not in sys.modules

    report = load_weights(o256, path)
    assert report.ok
    loaded = o256.state_dict()
    for key, value in net.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key

    ckpt = read_checkpoint(path)
    assert ckpt.format == "torch-zip" and ckpt.source == "ostrack"
    assert ckpt.info["epoch"] == 300 and ckpt.info["net_type"] == "OSTrackCMP"
    assert ckpt.info["settings.config_name"] == "ceatetta_256_r7_all"  # read from the stub
    assert infer_variant(ckpt.state_dict, ckpt.info) == "o256"  # UTPTrack-O stays UTPTrack-O
    assert "lib.train.admin.settings.Settings" in ckpt.stubs
    assert "lib.train.admin.stats.StatValue" in ckpt.stubs

    obj = safe_torch_load(path)
    settings = obj["settings"]
    assert isinstance(settings, StubObject) and settings.stub_name == "Settings"
    assert settings.state["config_name"] == "ceatetta_256_r7_all"  # recorded, not executed
    saved_state = container["optimizer"]["state"]
    assert torch.equal(obj["optimizer"]["state"][1]["exp_avg"], saved_state[1]["exp_avg"])
    assert obj["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert obj["stats"]["train"]["Loss"].state["history"] == [0.5, 0.25]


def test_load_model_infers_the_variant_from_an_official_file(tmp_path):
    torch.manual_seed(0)
    shapes = table_shapes("o256")
    net = random_state_dict(shapes, seed=2)
    path = tmp_path / "OSTrack_ep0300.pth.tar"
    torch.save({"net": net, "epoch": 300}, path)
    model = load_model(path)  # a bare OSTrack-layout file runs as OSTrack (one template, CE)
    assert model.config.name == "ostrack256" and not model.training
    assert model.config.num_templates == 1
    assert torch.equal(model.backbone.pos_embed_x, net["backbone.pos_embed_x"])


class _Payload:
    """Pickles as a call of ``os.system`` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    sd = {"w": torch.randn(3, 4), "b": torch.arange(4)}
    path = tmp_path / "evil.pth.tar"
    torch.save({"net": sd, "stats": _Payload(marker)}, path)

    obj = safe_torch_load(path)
    assert not marker.exists()
    stub = obj["stats"]
    assert isinstance(stub, StubObject) and stub.stub_name == "system"
    assert stub.args == (f"touch {marker}",)
    assert torch.equal(obj["net"]["w"], sd["w"]) and torch.equal(obj["net"]["b"], sd["b"])
    ckpt = read_checkpoint(path)
    assert not marker.exists()
    assert set(ckpt.state_dict) == {"w", "b"}

    # the payload is live: a full unpickle does run it (so the checks above can fail)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_payload_in_place_of_the_weights_fails_cleanly(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil2.pth.tar"
    torch.save({"net": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="pickled object"):
        read_checkpoint(path)
    assert not marker.exists()


def _tiny():
    torch.manual_seed(0)
    return create_model("tiny").eval()


def test_strict_load_names_missing_unexpected_and_mismatched_keys():
    model = _tiny()
    good = {k: v.clone() for k, v in model.state_dict().items()}
    missing_key = "box_head.conv2_size.1.num_batches_tracked"
    sd = dict(good)
    del sd[missing_key]
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(model, sd)
    assert "1 missing" in str(err.value) and missing_key in str(err.value)

    sd = dict(good, **{"backbone.extra_token": torch.zeros(3, 5)})
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(model, sd)
    assert "unexpected" in str(err.value) and "backbone.extra_token [3, 5]" in str(err.value)

    key = "backbone.blocks.0.attn.qkv.weight"
    rows, cols = good[key].shape
    sd = dict(good, **{key: torch.zeros(rows, cols + 1)})
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(model, sd)
    assert f"{key}: checkpoint [{rows}, {cols + 1}] vs model [{rows}, {cols}]" in str(err.value)

    # non-strict: missing/unexpected are tolerated (and reported), shape mismatches never are
    report = load_state_dict_into(model, dict(good, **{"backbone.extra_token": torch.zeros(1)}), strict=False)
    assert report.unexpected == ("backbone.extra_token [1]",)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_state_dict_into(model, dict(good, **{key: torch.zeros(1)}), strict=False)


def test_o384_weights_into_o256_name_both_position_embeddings(o256):
    sd = dict(o256.state_dict())
    sd.update({k: torch.zeros(s) for k, s in O384_CHANGES.items()})
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(o256, {"net": sd})
    msg = str(err.value)
    assert "2 shape mismatch" in msg
    assert "backbone.pos_embed_z: checkpoint [1, 144, 768] vs model [1, 64, 768]" in msg
    assert "backbone.pos_embed_x: checkpoint [1, 576, 768] vs model [1, 256, 768]" in msg


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_legacy_and_unknown_formats_are_refused_with_a_reason(tmp_path):
    legacy = tmp_path / "old.pth"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy .*not supported"):
        read_checkpoint(legacy)

    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_checkpoint(scripted)

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="unknown weights format"):
        read_checkpoint(junk)

    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="data.pkl"):
        read_checkpoint(other_zip)


def test_storage_record_shorter_than_the_pickle_claims_is_refused(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.randn(64)}, path)
    cut = tmp_path / "cut2.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(cut, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if "/data/" in info.filename:
                data = data[:16]
            dst.writestr(info.filename, data)
    with pytest.raises(CheckpointError, match="bytes"):
        read_checkpoint(cut)


def test_project_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = _tiny()
    with torch.no_grad():  # non-default buffers, so the round trip must carry them
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buf.normal_()
    extra = {"recipe": {"epochs": 3, "lr": 4e-4}, "metrics": {"auc": 0.61}}
    # the file name says "pth.tar" on purpose: the format is recognised by content
    path = save_model(model, tmp_path / "tiny_weights.pth.tar", extra=extra)
    assert sniff_format(path) == "safetensors"

    loaded = load_model(path)
    assert loaded.config == model.config
    ckpt = read_checkpoint(path)
    assert ckpt.source == "utptrack_ros" and ckpt.info == extra

    c = model.config
    g = torch.Generator().manual_seed(3)
    t = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    box = torch.tensor([[0.3, 0.25, 0.4, 0.5]])
    args = (t(1, c.in_chans, c.search_size, c.search_size), t(1, c.in_chans, c.template_size, c.template_size),
            t(1, c.in_chans, c.template_size, c.template_size), box, box)
    with torch.no_grad():
        a, b = model(*args), loaded(*args)
    for name in ("score_map", "size_map", "offset_map", "boxes", "task_logits"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.search_keep_mask, b.search_keep_mask)


def test_project_checkpoint_keeps_the_run_time_budget(tmp_path):
    model = _tiny()
    budget = model.prune.with_keep_ratio(0.5, 0.6, 0.4)
    model.set_prune(budget)
    loaded = load_model(save_model(model, tmp_path / "budget.safetensors"))
    assert loaded.prune == budget and loaded.config.prune == budget


def test_zip_named_like_safetensors_is_read_as_torch_zip(tmp_path):
    model = _tiny()
    path = tmp_path / "weights.safetensors"
    torch.save({"net": model.state_dict()}, path)
    assert sniff_format(path) == "torch-zip"
    fresh = create_model("tiny")
    assert load_weights(fresh, path).ok
    key = "backbone.blocks.0.attn.qkv.weight"
    assert torch.equal(fresh.state_dict()[key], model.state_dict()[key])


def test_restricted_unpickler_rebuilds_every_tensor_kind_like_torch(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(7).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "i64": torch.arange(5),
        "bool": torch.tensor([True, False, True]),
        "u16": torch.tensor([1, 2, 60000], dtype=torch.uint16),  # saved through _rebuild_tensor_v3
        "c64": torch.randn(2, dtype=torch.complex64),
        "scalar": torch.tensor(2.5),
        "transposed": base.t(),  # non-contiguous view
        "slice": base[1:, 2:5],  # storage offset, shares storage with "transposed"
        "param": torch.nn.Parameter(torch.ones(2)),
        "meta": {"size": torch.Size([3, 4]), "tags": {"a", "b"}, "blob": b"\x00\xff", "sl": slice(1, 4)},
    }
    path = tmp_path / "kinds.pt"
    torch.save(obj, path)
    ours = safe_torch_load(path)
    with torch.serialization.safe_globals([slice]):
        ref = torch.load(path, weights_only=True)
    for key in ("f32", "f16", "bf16", "i64", "bool", "u16", "c64", "scalar", "transposed", "slice", "param"):
        assert ours[key].dtype == ref[key].dtype, key
        assert ours[key].shape == ref[key].shape and ours[key].stride() == ref[key].stride(), key
        assert torch.equal(ours[key], ref[key]), key
    assert ours["transposed"].untyped_storage().data_ptr() == ours["slice"].untyped_storage().data_ptr()
    assert isinstance(ours["param"], torch.nn.Parameter)
    assert ours["meta"] == ref["meta"]
