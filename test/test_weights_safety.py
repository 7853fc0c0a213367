"""Weights files as untrusted input: damaged copies, crafted configs, zip bombs, hidden stubs.

Memory is measured in a child process (peak RSS growth around one load, ``ru_maxrss``) that also
caps its address space a few GiB above its start, so a regression fails here instead of
exhausting the machine.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from safetensors.torch import save_file
from testutils import small_o
from torch._utils import _rebuild_tensor_v2

from utptrack_ros.checkpoint import load_model, load_weights, read_checkpoint, save_model
from utptrack_ros.config import to_mapping
from utptrack_ros.errors import CheckpointError
from utptrack_ros.models import create_model, shipped_weights
from utptrack_ros.safetensors_header import DIGEST_KEY, add_digest, read_header, tensors_digest

GROWTH_LIMIT_MB = 200

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch, safetensors.torch, utptrack_ros.models, utptrack_ros.checkpoint  # loaded before measuring
    from utptrack_ros.checkpoint import load_model
    from utptrack_ros.errors import CheckpointError

    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 3 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    try:
        load_model(sys.argv[1])
        outcome, message = "loaded", ""
    except CheckpointError as err:
        outcome, message = "CheckpointError", str(err)
    except BaseException as err:
        outcome, message = type(err).__name__, str(err)
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps({"outcome": outcome, "message": message[:2000], "growth_mb": growth,
                      "seconds": time.monotonic() - start}))
    """
)


def _load_in_child(path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- 1. integrity: a recorded SHA-256 ------------------------------------------------------------


def _damaged_copy(src, dst, nbytes: int = 4096):
    """``src`` with ``nbytes`` inverted in the middle of the file, same length."""
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    data[mid : mid + nbytes] = bytes(b ^ 0xFF for b in data[mid : mid + nbytes])
    dst.write_bytes(bytes(data))
    return dst


def test_the_shipped_weights_record_a_digest_that_matches():
    path = shipped_weights("tiny")
    header = read_header(path)
    assert header.metadata[DIGEST_KEY] == tensors_digest(header)


def test_a_damaged_copy_of_the_shipped_weights_is_refused(tmp_path):
    src = shipped_weights("tiny")
    bad = _damaged_copy(src, tmp_path / "tiny.safetensors")
    assert bad.stat().st_size == src.stat().st_size
    recorded = read_header(src).metadata[DIGEST_KEY]
    with pytest.raises(CheckpointError) as info:
        load_model(bad)
    message = str(info.value)
    assert str(bad) in message and recorded in message and tensors_digest(read_header(bad)) in message
    with pytest.raises(CheckpointError, match="damaged or were modified"):
        load_weights(create_model("tiny"), bad)


def test_save_model_records_the_digest_and_damage_anywhere_is_caught(tmp_path):
    model = small_o()
    path = save_model(model, tmp_path / "m.safetensors", extra={"note": "x"})
    header = read_header(path)
    assert header.metadata[DIGEST_KEY] == tensors_digest(header)
    assert load_model(path).config == model.config
    data = path.read_bytes()
    last = tmp_path / "last.safetensors"  # one flipped bit in the last tensor byte
    last.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(last)
    meta = tmp_path / "meta.safetensors"  # the covered metadata changed, same length
    meta.write_bytes(data.replace(b'\\"x\\"}', b'\\"y\\"}', 1))
    assert meta.read_bytes() != data
    with pytest.raises(CheckpointError, match="damaged"):
        read_checkpoint(meta)


def test_a_file_without_a_digest_loads_with_a_note(tmp_path, caplog):
    model = small_o()
    path = tmp_path / "old.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "utptrack_ros", "format_version": "1",
                                             "model_config": json.dumps(to_mapping(model.config)), "extra": "{}"})
    with caplog.at_level("INFO", logger="utptrack_ros.checkpoint"):
        loaded = load_model(path)
    assert "integrity not verified" in caplog.text
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tensors.items())


def test_add_digest_changes_the_header_only(tmp_path):
    model = small_o()
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata={"a": "b"})
    before = read_header(path)
    data_before = path.read_bytes()[before.data_start :]
    add_digest(path)
    after = read_header(path)
    assert after.tensors == before.tensors and after.metadata == {"a": "b", DIGEST_KEY: tensors_digest(after)}
    assert path.read_bytes()[after.data_start :] == data_before
    assert after.data_start % 8 == 0
    report = load_weights(small_o(), path)
    assert report.ok


def _record_span(path, key: str) -> tuple[int, int]:
    """File offset and size of the stored record ``<archive>/data/<key>``."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(f"/data/{key}"))
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_a_damaged_official_file_is_refused_where_its_weights_are(tmp_path):
    """Official files carry a zip CRC-32 per record; the records the state dict uses are checked."""
    torch.manual_seed(0)
    net = {"w": torch.randn(256, 64), "b": torch.randn(64)}
    moment = torch.randn(256, 64)
    path = tmp_path / "OSTrack_ep0300.pth.tar"
    torch.save({"net": net, "optimizer": {"state": {0: {"exp_avg": moment}}}}, path)
    assert read_checkpoint(path).state_dict.keys() == net.keys()

    def damaged(key: str):
        copy = tmp_path / f"damaged_{key}.pth.tar"
        data = bytearray(path.read_bytes())
        start, size = _record_span(path, key)
        mid = start + size // 2
        data[mid : mid + 4096] = bytes(b ^ 0xFF for b in data[mid : mid + 4096])
        copy.write_bytes(bytes(data))
        return copy

    with pytest.raises(CheckpointError, match="data/0 is damaged: its CRC-32"):
        read_checkpoint(damaged("0"))  # "w", the first storage saved
    ckpt = read_checkpoint(damaged("2"))  # the optimizer moment: not used, not read, not checked
    assert torch.equal(ckpt.state_dict["w"], net["w"])


# -- 2. a crafted model_config -----------------------------------------------------------------


def _with_config(tmp_path, file_stem: str, **changes):
    """The small model's tensors under a stored config with ``changes`` (no digest: crafted)."""
    model = small_o()
    config = {**to_mapping(model.config), **changes}
    path = tmp_path / f"{file_stem}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "utptrack_ros", "format_version": "1", "model_config": json.dumps(config),
                        "extra": "{}"})
    return path


@pytest.mark.parametrize(
    "name, changes, reason",
    [
        ("huge", {"embed_dim": 100000, "depth": 10000, "num_heads": 1}, "outside"),
        ("in_range", {"embed_dim": 4096, "depth": 64, "num_heads": 64}, "does not describe the stored tensors"),
    ],
)
def test_a_crafted_config_is_refused_before_building_with_bounded_memory(tmp_path, name, changes, reason):
    result = _load_in_child(_with_config(tmp_path, name, **changes))
    assert result["outcome"] == "CheckpointError", result
    assert reason in result["message"]
    assert result["growth_mb"] < GROWTH_LIMIT_MB, result
    assert result["seconds"] < 30, result


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"depth": "12"}, "depth='12' is not a whole number"),
        ({"depth": 12.0}, "is not a whole number"),
        ({"token_type_embed": 1}, "not true/false"),
        ({"mlp_ratio": float("inf")}, "not a number"),
        ({"head_channels": [32, 16, 16]}, "head_channels"),
        ({"prune": {"ce": [[1, "a"]]}}, "prune.ce"),
        ({"evil": 1}, "unknown key"),
        ({"name": "../../outside"}, "is not a plain name"),
        ({"depth": 11}, "does not describe the stored tensors: it needs"),
        ({"embed_dim": 48, "num_heads": 3}, "shape(s) differ"),
    ],
)
def test_config_types_ranges_and_shapes_are_checked(tmp_path, changes, reason):
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(_with_config(tmp_path, "c", **changes))
    assert reason in str(info.value)


# -- 3. zip bombs ------------------------------------------------------------------------------


class _StorageRecord:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorRecord:
    """Pickles like a float32 tensor over a whole storage record (torch's own reduce)."""

    def __init__(self, storage: _StorageRecord) -> None:
        self.storage = storage

    def __reduce__(self):
        n = self.storage.numel
        return (_rebuild_tensor_v2, (self.storage, 0, (n,), (1,), False, collections.OrderedDict()))


class _ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRecord):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _torch_zip(path, numel: int, record: bytes = b"", inflated: int = 0):
    """A torch zip archive ``{"net": {"w": float32[numel]}}`` whose record ``data/0`` is either
    ``record`` (stored) or ``inflated`` zero bytes deflated (a zip bomb when large)."""
    buf = io.BytesIO()
    _ArchivePickler(buf, protocol=2).dump({"net": {"w": _TensorRecord(_StorageRecord("0", numel))}})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue(), compress_type=zipfile.ZIP_STORED)
        zf.writestr("archive/byteorder", "little", compress_type=zipfile.ZIP_STORED)
        if inflated:
            zeros = bytes(2**20)
            with zf.open("archive/data/0", "w", force_zip64=True) as fh:
                for _ in range(inflated // len(zeros)):
                    fh.write(zeros)
        else:
            zf.writestr("archive/data/0", record, compress_type=zipfile.ZIP_STORED)
        zf.writestr("archive/version", "3\n", compress_type=zipfile.ZIP_STORED)
    return path


def test_a_zip_bomb_checkpoint_is_refused_with_bounded_memory(tmp_path):
    inflated = 512 * 2**20
    path = _torch_zip(tmp_path / "bomb.pth.tar", numel=inflated // 4, inflated=inflated)
    assert path.stat().st_size < 2 * 2**20
    result = _load_in_child(path)
    assert result["outcome"] == "CheckpointError", result
    assert "zip bomb" in result["message"]
    assert result["growth_mb"] < GROWTH_LIMIT_MB, result


def test_a_pickle_claiming_a_huge_storage_is_refused(tmp_path):
    path = _torch_zip(tmp_path / "claims.pth.tar", numel=2**40, record=bytes(16))
    with pytest.raises(CheckpointError, match="has 16 bytes, pickle expects"):
        read_checkpoint(path)


def test_compressed_records_are_read_within_the_inflate_budget(tmp_path):
    """A re-zipped (deflated) archive still loads; beyond ``max_inflate_bytes`` it is refused."""
    torch.manual_seed(0)
    sd = {"w": torch.randn(512, 1024), "b": torch.randn(7)}
    plain = tmp_path / "plain.pth.tar"
    torch.save({"net": sd}, plain)
    rezipped = tmp_path / "rezipped.pth.tar"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(rezipped, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    ckpt = read_checkpoint(rezipped)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in sd.items())
    with pytest.raises(CheckpointError, match="max_inflate_bytes"):
        read_checkpoint(rezipped, max_inflate_bytes=2**20)


# -- 4. every stub is reported ------------------------------------------------------------------


class RepoSettings:
    """Stand-ins for classes of an official repository (stubbed on load: not on the allow-list)."""


class RepoHook:
    pass


class RepoKey:
    pass


class RepoMeter:
    pass


class RepoTensorNote:
    pass


def test_stubs_are_reported_wherever_the_pickle_names_them(tmp_path):
    stats = collections.OrderedDict(loss=1.0)
    stats.settings = RepoSettings()  # BUILD state of an allow-listed OrderedDict
    stats.hooks = {"on_step": RepoHook()}  # ... nested in it
    noted = torch.zeros(2)
    noted.note = RepoTensorNote()  # python state of a tensor (dropped on load)
    args = argparse.Namespace(meter=RepoMeter())  # an unknown class whose state holds another
    sd = {"w": torch.randn(2, 3)}
    path = tmp_path / "stubs.pth.tar"
    torch.save({"net": sd, "stats": stats, "noted": noted, "args": args,
                "index": {RepoKey(): 1}}, path)

    stubs = set(read_checkpoint(path).stubs)
    here = __name__
    assert {f"{here}.{c}" for c in ("RepoSettings", "RepoHook", "RepoKey", "RepoMeter", "RepoTensorNote")} <= stubs
    assert "argparse.Namespace" in stubs
    assert read_checkpoint(path).stubs == tuple(sorted(stubs))
