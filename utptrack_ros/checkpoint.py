"""Safe checkpoint I/O: official OSTrack / UTPTrack-O training files and the project's own files.

Official files (method.md 8.1, 8.2, 11, 12.10) are ``torch.save`` zip archives of a full training
state: ``net`` (the state dict), ``optimizer`` (AdamW moments), and pickled objects of the
official repositories' own classes (``settings``, ``stats``, ``constructor``). They are read here
**without executing pickled code**: a restricted unpickler rebuilds tensors and plain containers
from an explicit allow-list and turns every other class or function into an inert
:class:`StubObject` that only records what it was called with. ``torch.load(weights_only=False)``
is never used; storages are memory-mapped from the archive, so tensors nobody reads (optimizer
moments) cost no memory.

The project's own checkpoints are safetensors files whose metadata carries the
:class:`~utptrack_ros.config.ModelConfig` as JSON (plus optional extra metadata such as the
training recipe and metrics), so :func:`load_model` rebuilds the exact variant.

Every file is untrusted input, checked before anything is allocated or used (docs/security.md):
safetensors files by their recorded SHA-256 (:mod:`.safetensors_header`; files without one
load with a logged note) and their stored config against the tensors the header lists
(:mod:`.stored_config`); torch zip archives by the declared sizes of their records (zip bombs,
pickles claiming more than a record holds) and the zip CRC-32 of the records the state dict uses.

The format is chosen by content (zip magic vs safetensors header), never by file name. Loading
is strict by default: missing keys, unexpected keys and shape mismatches raise
:class:`~utptrack_ros.errors.CheckpointError` naming them.

Typical use::

    model = load_model("OSTrackCMP_ep0300.pth.tar")        # variant from the file's content
    model = load_model("weights.safetensors")               # config stored in the file
    report = load_weights(create_model("o256"), path)        # into an existing model
    save_model(model, "weights.safetensors", extra={"recipe": "..."})
"""
from __future__ import annotations

import collections
import io
import json
import logging
import os
import pickle
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .config import ModelConfig, PruneConfig, to_mapping
from .errors import CheckpointError
from .models import UTPTrack, build_model, create_model
from .official import choose_s_variant, choose_variant, clip_no_prompt_feature
from .safetensors_header import DIGEST_KEY, add_digest, read_header, verify_digest
from .stored_config import check_stored_config

log = logging.getLogger(__name__)

__all__ = [
    "Checkpoint",
    "KeyReport",
    "StubObject",
    "sniff_format",
    "safe_torch_load",
    "read_checkpoint",
    "unwrap_state_dict",
    "detect_source",
    "ostrack_filter_fn",
    "sutrack_filter_fn",
    "project_filter_fn",
    "infer_variant",
    "check_state_dict",
    "load_state_dict_into",
    "load_weights",
    "save_model",
    "load_model",
]

PathLike = Union[str, os.PathLike]

FORMAT_TORCH_ZIP = "torch-zip"
FORMAT_SAFETENSORS = "safetensors"

SOURCE_OSTRACK = "ostrack"  # OSTrack-256/384 and UTPTrack-O: backbone.* / box_head.* keys
SOURCE_SUTRACK = "sutrack"  # SUTrack / UTPTrack-S: encoder.body.* / decoder.* keys
SOURCE_PROJECT = "utptrack_ros"  # this package's own safetensors files
SOURCE_UNKNOWN = "unknown"

_META_FORMAT = "format"
_META_FORMAT_VALUE = "utptrack_ros"
_META_VERSION = "format_version"
_META_CONFIG = "model_config"
_META_EXTRA = "extra"
_FORMAT_VERSION = "1"

_REPORT_LIMIT = 10  # keys listed per category in error messages

# Size limits of torch zip archives, checked before allocating (torch.save stores records
# uncompressed; they are memory-mapped and cost nothing until read).
MAX_INFLATE_BYTES = 2**30  # default total of compressed records inflated into memory
MAX_INFLATE_RATIO = 100  # declared / compressed size above which a record is a zip bomb
MAX_PICKLE_BYTES = 64 * 2**20  # data.pkl: structure only (official training files: < 1 MB)
_SMALL_RECORD = 2**20  # records up to this size skip the ratio check

# -- restricted unpickler -------------------------------------------------------------------


class StubObject:
    """Inert stand-in for a class or function the allow-list does not admit.

    Calling, instantiating or restoring it only records the arguments; it never imports or runs
    anything. ``stub_module`` / ``stub_name`` say what the pickle referred to (e.g.
    ``lib.train.admin.settings`` / ``Settings``, or ``posix`` / ``system`` for a payload).

    Attributes:
        args: positional arguments it was created or called with.
        kwargs: keyword arguments (NEWOBJ_EX).
        state: what ``__setstate__`` received (usually the object's ``__dict__``).
        items: values appended (list subclasses).
        entries: items set by key (dict subclasses).
    """

    stub_module: str = ""
    stub_name: str = ""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]
    entries: dict[Any, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> "StubObject":
        obj = object.__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "kwargs", kwargs)
        object.__setattr__(obj, "state", None)
        object.__setattr__(obj, "items", [])
        object.__setattr__(obj, "entries", {})
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: D107 - arguments recorded in __new__
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __call__(self, *args: Any, **kwargs: Any) -> "StubObject":
        """A stub called like a function yields another stub; nothing runs."""
        return type(self)(*args, **kwargs)

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    def __repr__(self) -> str:
        return f"<stub {self.stub_module}.{self.stub_name}>"


@dataclass(frozen=True)
class _StorageType:
    """What an allowed ``torch.<X>Storage`` global unpickles to: only its dtype."""

    dtype: torch.dtype


class _LoadedStorage:
    """Bytes of one ``<archive>/data/<key>`` record (memory-mapped, copy-on-write)."""

    def __init__(self, data: Tensor, dtype: torch.dtype) -> None:
        self.data = data  # (nbytes,) uint8
        self.dtype = dtype

    def typed(self, dtype: torch.dtype) -> Tensor:
        if dtype in _QUANTIZED:
            raise CheckpointError(f"quantized tensors ({dtype}) are not supported")
        itemsize = torch.empty((), dtype=dtype).element_size()
        if self.data.numel() % itemsize:
            raise CheckpointError(f"storage of {self.data.numel()} bytes is not a whole number of {dtype} items")
        if self.data.numel() == 0:
            return torch.empty(0, dtype=dtype)
        return self.data.view(dtype)


_LEGACY_STORAGES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexDoubleStorage": torch.complex128,
    "ComplexFloatStorage": torch.complex64,
    "UntypedStorage": torch.uint8,
}

_QUANTIZED = {torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4}

_DTYPES: dict[str, torch.dtype] = {
    name: value for name in dir(torch) if isinstance(value := getattr(torch, name, None), torch.dtype)
}


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise CheckpointError(f"malformed tensor record in pickle: {what}")


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    _expect(isinstance(value, (tuple, list)) and all(type(v) is int for v in value), f"{what} must be ints")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype) -> Tensor:
    _expect(isinstance(storage, _LoadedStorage), "storage is not a storage record")
    _expect(type(offset) is int and offset >= 0, "storage offset")
    size_t, stride_t = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    _expect(len(size_t) == len(stride_t), "size and stride lengths differ")
    flat = storage.typed(dtype)
    try:
        return flat.as_strided(size_t, stride_t, offset)
    except RuntimeError as err:
        raise CheckpointError(f"tensor record points outside its storage: {err}") from err


def _safe_rebuild_tensor_v2(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None
) -> Tensor:
    """``torch._utils._rebuild_tensor_v2`` without hooks or metadata (never called with code)."""
    _expect(isinstance(storage, _LoadedStorage), "storage is not a storage record")
    return _rebuild_tensor(storage, offset, size, stride, storage.dtype)


def _safe_rebuild_tensor_v3(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> Tensor:
    """``torch._utils._rebuild_tensor_v3`` (untyped storage + explicit dtype)."""
    _expect(isinstance(dtype, torch.dtype), "dtype")
    return _rebuild_tensor(storage, offset, size, stride, dtype)


def _safe_rebuild_parameter(data: Any, requires_grad: Any, hooks: Any, state: Any = None) -> nn.Parameter:
    """``torch._utils._rebuild_parameter[_with_state]``; hooks and python state are dropped."""
    _expect(isinstance(data, Tensor), "parameter data is not a tensor")
    return nn.Parameter(data, requires_grad=bool(requires_grad) and data.is_floating_point())


_REBUILDERS = (_safe_rebuild_tensor_v2, _safe_rebuild_tensor_v3, _safe_rebuild_parameter)


def _safe_rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """Tensor subclasses / tensors with python attributes: rebuild the plain tensor only."""
    _expect(func in _REBUILDERS and isinstance(args, tuple), "unknown tensor rebuild function")
    return func(*args)


def _safe_encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` values."""
    _expect(isinstance(text, str) and encoding in ("latin1", "latin-1"), "bytes record")
    return text.encode("latin1")


def _safe_bytearray(*args: Any) -> bytearray:
    _expect(all(isinstance(a, (bytes, str, list)) for a in args[:1]), "bytearray argument")  # no int sizes
    return bytearray(*args)


def _safe_device(*args: Any) -> torch.device:
    _expect(all(isinstance(a, (str, int)) for a in args), "device")
    return torch.device(*args)


def _safe_size(dims: Any = ()) -> torch.Size:
    return torch.Size(_int_tuple(dims, "torch.Size"))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("torch._utils", "_rebuild_tensor_v2"): _safe_rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _safe_rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _safe_rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _safe_rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _safe_rebuild_from_type_v2,
    ("torch", "Size"): _safe_size,
    ("torch", "device"): _safe_device,
    ("_codecs", "encode"): _safe_encode,
}
for _mod in ("builtins", "__builtin__"):  # protocol-2 pickles name the module __builtin__
    _ALLOWED.update(
        {
            (_mod, "set"): set,
            (_mod, "frozenset"): frozenset,
            (_mod, "slice"): slice,
            (_mod, "complex"): complex,
            (_mod, "bytearray"): _safe_bytearray,
        }
    )
for _name, _dtype in _LEGACY_STORAGES.items():
    _ALLOWED[("torch", _name)] = _StorageType(_dtype)
    _ALLOWED[("torch.storage", _name)] = _StorageType(_dtype)
for _name, _dtype in _DTYPES.items():
    _ALLOWED[("torch", _name)] = _dtype


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals come only from :data:`_ALLOWED`; everything else is a stub."""

    def __init__(self, data: bytes, load_storage: Callable[[str, torch.dtype, int], _LoadedStorage]) -> None:
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage
        self._stub_classes: dict[tuple[str, str], type[StubObject]] = {}

    @property
    def stubbed(self) -> list[str]:
        return sorted(f"{m}.{n}" for m, n in self._stub_classes)

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle protocol
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        key = (module, name)
        if key not in self._stub_classes:
            log.debug("pickle global %s.%s replaced by an inert stub", module, name)
            self._stub_classes[key] = type(
                str(name.rsplit(".", 1)[-1]) or "Stub", (StubObject,), {"stub_module": module, "stub_name": name}
            )
        return self._stub_classes[key]

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle protocol
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent record {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"storage record of unsupported type {storage_type!r:.80}")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointError(f"malformed storage record {pid!r:.80}")
        return self._load_storage(key, storage_type.dtype, numel)


# -- torch zip archive -----------------------------------------------------------------------


def _record_offset(fh: Any, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored (uncompressed) zip record's data inside the file."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointError(f"corrupt zip local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class _TorchZipReader:
    """Reads ``<archive>/data.pkl`` and memory-maps ``<archive>/data/<key>`` records on demand.

    Sizes are checked before anything is allocated: a record's declared size against what the
    pickle expects of it, compressed records (``torch.save`` never compresses; a re-zipped
    archive does) against :data:`MAX_INFLATE_RATIO` and a total of ``max_inflate_bytes``.
    """

    def __init__(self, path: Path, max_inflate_bytes: int = MAX_INFLATE_BYTES) -> None:
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError, EOFError) as err:
            raise CheckpointError(f"{path}: not a readable zip archive ({err})") from err
        names = self.zip.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if any(n.endswith("/constants.pkl") for n in names):
            raise CheckpointError(
                f"{path} is a TorchScript archive (torch.jit.save), not a state dict; "
                "save the state dict (model.state_dict()) instead"
            )
        if len(pkls) != 1:
            raise CheckpointError(f"{path}: zip archive without exactly one '<archive>/data.pkl' record: {names[:5]}")
        self.prefix = pkls[0][: -len("data.pkl")]
        self._inflate_left = max_inflate_bytes
        order = self._read_small("byteorder", 64)
        self.swap = order is not None and order.decode("ascii", "replace").strip() != sys.byteorder
        self._fh = open(path, "rb")
        self._mmap: Optional[np.ndarray] = None
        self._cache: dict[str, _LoadedStorage] = {}
        self._stored: dict[str, tuple[zipfile.ZipInfo, int]] = {}  # key -> (record, data offset)
        self._key_of: dict[int, str] = {}  # storage data pointer -> key

    def close(self) -> None:
        """Close the archive; memory-mapped tensors stay valid."""
        self._fh.close()
        self.zip.close()

    def _read_small(self, name: str, limit: int) -> Optional[bytes]:
        """A whole metadata record, refused when it declares more than ``limit`` bytes."""
        try:
            info = self.zip.getinfo(self.prefix + name)
        except KeyError:
            return None
        if info.file_size > limit:
            raise CheckpointError(f"{self.path}: record {name} declares {info.file_size} bytes (at most {limit} read)")
        self._check_compression(info)
        try:
            return self.zip.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise CheckpointError(f"{self.path}: record {name} is corrupt ({err})") from err

    def data_pkl(self) -> bytes:
        data = self._read_small("data.pkl", MAX_PICKLE_BYTES)
        if data is None:
            raise CheckpointError(f"{self.path}: no {self.prefix}data.pkl record")
        return data

    def _check_compression(self, info: zipfile.ZipInfo) -> None:
        """Refuse a compressed record that inflates like a zip bomb or beyond the budget."""
        if info.compress_type == zipfile.ZIP_STORED or info.file_size <= _SMALL_RECORD:
            return
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > MAX_INFLATE_RATIO:
            raise CheckpointError(
                f"{self.path}: record {info.filename} inflates {info.compress_size} bytes to {info.file_size} "
                f"({ratio:.0f}:1, more than {MAX_INFLATE_RATIO}:1): a zip bomb, refused before inflating"
            )
        if info.file_size > self._inflate_left:
            raise CheckpointError(
                f"{self.path}: compressed records inflate to more than max_inflate_bytes allows "
                f"(record {info.filename}: {info.file_size} bytes); torch.save writes them uncompressed: "
                "re-save the file, or raise max_inflate_bytes if you trust it"
            )
        self._inflate_left -= info.file_size

    def _bytes(self, key: str, needed: int) -> Tensor:
        try:
            info = self.zip.getinfo(f"{self.prefix}data/{key}")
        except KeyError as err:
            raise CheckpointError(f"{self.path}: pickle refers to missing storage record data/{key}") from err
        if info.file_size < needed:
            raise CheckpointError(f"{self.path}: storage data/{key} has {info.file_size} bytes, pickle expects {needed}")
        if info.file_size == 0:
            return torch.empty(0, dtype=torch.uint8)
        if info.compress_type != zipfile.ZIP_STORED:
            self._check_compression(info)
            out = torch.empty(info.file_size, dtype=torch.uint8)
            try:
                with self.zip.open(info) as fh:
                    got = fh.readinto(memoryview(out.numpy()))  # type: ignore[attr-defined, arg-type]  # __buffer__: 3.12+
                    fh.read(1)  # reaches the end of the record: zipfile checks its CRC-32
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
                raise CheckpointError(f"{self.path}: storage record data/{key} is corrupt ({err})") from err
            if got != info.file_size:
                raise CheckpointError(f"{self.path}: storage record data/{key} inflates to {got} bytes, not {info.file_size}")
            return out
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="c")  # copy-on-write: file never changes
        start = _record_offset(self._fh, info)
        if start + info.file_size > self._mmap.shape[0]:
            raise CheckpointError(f"{self.path}: storage record data/{key} runs past the end of the file")
        self._stored[key] = (info, start)
        return torch.from_numpy(self._mmap[start : start + info.file_size])

    def storage(self, key: str, dtype: torch.dtype, numel: int) -> _LoadedStorage:
        if key in self._cache:
            return self._cache[key]
        itemsize = torch.empty((), dtype=dtype).element_size()
        raw = self._bytes(key, numel * itemsize)
        if self.swap and itemsize > 1:
            raw = raw[: raw.numel() - raw.numel() % itemsize].reshape(-1, itemsize).flip(1).reshape(-1).clone()
        storage = _LoadedStorage(raw, dtype)
        self._cache[key] = storage
        self._key_of[raw.untyped_storage().data_ptr()] = key
        return storage

    def verify_crc(self, tensors: Any) -> int:
        """Check the zip CRC-32 of the stored records behind ``tensors`` (read from the file, not
        the memory map, so it costs no resident memory); inflated records were checked when read.

        Returns:
            Bytes verified.
        Raises:
            CheckpointError: a record whose bytes do not match its CRC-32 (a damaged file).
        """
        keys = {self._key_of.get(t.untyped_storage().data_ptr()) for t in tensors}
        checked = 0
        with open(self.path, "rb") as fh:
            for key in sorted(k for k in keys if k in self._stored):
                info, start = self._stored[key]
                fh.seek(start)
                crc, left = 0, info.file_size
                while left and (chunk := fh.read(min(left, 1 << 20))):
                    crc, left = zlib.crc32(chunk, crc), left - len(chunk)
                if left or crc != info.CRC:
                    raise CheckpointError(
                        f"{self.path}: storage record data/{key} is damaged: its CRC-32 is {info.CRC:08x}, "
                        f"the file gives {crc:08x}; fetch the file again"
                    )
                checked += info.file_size
        return checked


def sniff_format(path: PathLike) -> str:
    """Identify a weights file by its first bytes (never by its name).

    Returns:
        ``"torch-zip"`` or ``"safetensors"``.
    Raises:
        CheckpointError: for legacy ``torch.save`` formats, empty/unknown files, with the reason.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(512)
    if head[:4] == b"PK\x03\x04":
        return FORMAT_TORCH_ZIP
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return FORMAT_SAFETENSORS
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise CheckpointError(
            f"{p}: legacy (non-zip) torch.save format (written with _use_new_zipfile_serialization=False "
            "or torch < 1.6) is not supported: it interleaves pickles with raw storages and cannot be read "
            "without running its pickled code. If you trust the file, re-save it once with a recent torch "
            "(torch.save(obj, new_path)) in an isolated environment, or export a safetensors file."
        )
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise CheckpointError(f"{p}: legacy tar-based torch.save format (torch < 0.4) is not supported")
    if size == 0:
        raise CheckpointError(f"{p}: empty file")
    raise CheckpointError(f"{p}: unknown weights format (neither a torch zip archive nor safetensors)")


def safe_torch_load(path: PathLike, max_inflate_bytes: int = MAX_INFLATE_BYTES) -> Any:
    """Unpickle a ``torch.save`` zip archive without executing pickled code.

    Tensors are memory-mapped from the archive (copy-on-write). Allowed globals: tensor and
    parameter rebuild functions, storage types, dtypes, ``torch.Size``, ``torch.device``,
    ``collections.OrderedDict``/``Counter``, ``set``, ``frozenset``, ``slice``, ``complex``,
    ``bytearray`` and ``_codecs.encode``. Every other global becomes an inert :class:`StubObject`.

    Args:
        path: a zip-format ``torch.save`` file.
        max_inflate_bytes: most bytes compressed records may inflate to in total (``torch.save``
            never compresses; stored records are memory-mapped and do not count).
    Returns:
        The unpickled object tree (containers, tensors, stubs).
    Raises:
        CheckpointError: not a torch zip archive, malformed records, sizes that do not add up,
            or compressed records beyond the limits (zip bombs), all before allocating.
    """
    return _unpickle(Path(path), max_inflate_bytes)[0]


def _unpickle(p: Path, max_inflate_bytes: int) -> tuple[Any, list[str], _TorchZipReader]:
    """The object tree, ``module.name`` of every pickled global that became a stub, and the
    (closed) reader that knows which record each storage came from."""
    fmt = sniff_format(p)
    if fmt != FORMAT_TORCH_ZIP:
        raise CheckpointError(f"{p}: expected a torch zip archive, found {fmt}")
    reader = _TorchZipReader(p, max_inflate_bytes)
    try:
        unpickler = _RestrictedUnpickler(reader.data_pkl(), reader.storage)
        obj = unpickler.load()
    except CheckpointError:
        raise
    except Exception as err:  # malformed pickle: any exception type the unpickler raises
        raise CheckpointError(f"{p}: cannot unpickle data.pkl safely: {type(err).__name__}: {err}") from err
    finally:
        reader.close()
    if unpickler.stubbed:
        log.info("%s: %d pickled class(es)/function(s) replaced by inert stubs: %s", p.name,
                 len(unpickler.stubbed), ", ".join(unpickler.stubbed[:8]))
    return obj, unpickler.stubbed, reader


# -- containers and sources ------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A weights file read into memory.

    Attributes:
        format: ``torch-zip`` or ``safetensors``.
        state_dict: parameter/buffer name -> tensor (unwrapped from ``net``/``model``/...).
        source: ``ostrack`` (OSTrack / UTPTrack-O keys), ``sutrack``, ``utptrack_ros`` or ``unknown``.
        model_config: the stored config (project files), else None.
        info: plain scalar fields of the container (``epoch``, ``net_type``, ...) plus the plain
            fields of its pickled official ``settings`` as ``settings.<name>`` (``script_name``,
            ``config_name``, ``output_sz``, ...), or the extra metadata of a project file.
        stubs: ``module.name`` of every pickled global replaced by a stub, wherever the pickle
            names it (values, dict keys, ``__setstate__`` / BUILD state of any object, state
            that was dropped), sorted.
    """

    format: str
    state_dict: dict[str, Tensor]
    source: str
    model_config: Optional[ModelConfig] = None
    info: dict[str, Any] = field(default_factory=dict)
    stubs: tuple[str, ...] = ()


def unwrap_state_dict(obj: Any) -> dict[str, Tensor]:
    """Find the state dict inside a checkpoint container.

    Follows ``net`` (official trainers), ``model``, ``state_dict``, ``model_state_dict`` and
    strips a ``module.`` prefix shared by every key (DataParallel).

    Args:
        obj: what :func:`safe_torch_load` returned, or a state dict.
    Returns:
        name -> tensor.
    Raises:
        CheckpointError: no state dict found, or non-tensor values (named).
    """
    current = obj
    for _ in range(4):
        if isinstance(current, Mapping):
            inner = next((current[k] for k in ("net", "model", "state_dict", "model_state_dict") if k in current), None)
            if inner is None:
                break
            if isinstance(inner, StubObject):
                raise CheckpointError(
                    f"the checkpoint's weights are a pickled object ({inner!r}), not a state dict; "
                    "save model.state_dict() instead"
                )
            current = inner
        else:
            break
    if not isinstance(current, Mapping) or not current:
        raise CheckpointError(f"no state dict found (top level is {type(obj).__name__})")
    bad = [k for k, v in current.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        keys = ", ".join(repr(k) for k in bad[:_REPORT_LIMIT])
        raise CheckpointError(f"state dict has {len(bad)} non-tensor entries (e.g. {keys}); keys: {list(current)[:5]}")
    sd = dict(current)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def detect_source(state_dict: Mapping[str, Tensor]) -> str:
    """Which family wrote ``state_dict``, judged by key prefixes (method.md 8.2, 8.3).

    Returns:
        ``ostrack`` for ``backbone.*`` + ``box_head.*`` (OSTrack-256/384, UTPTrack-O: identical
        key sets), ``sutrack`` for ``encoder.body.*`` + ``decoder.*`` (SUTrack, UTPTrack-S),
        otherwise ``unknown``.
    """
    keys = list(state_dict)
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("box_head.") for k in keys):
        return SOURCE_OSTRACK
    if any(k.startswith("encoder.body.") for k in keys) and any(k.startswith("decoder.") for k in keys):
        return SOURCE_SUTRACK
    return SOURCE_UNKNOWN


def ostrack_filter_fn(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Adapt an OSTrack / UTPTrack-O state dict to ``model`` (pure; returns a new dict).

    The O variants use the official names unchanged; the dynamic template reuses
    ``pos_embed_z`` (method.md 2.3), so one-template OSTrack files load as they are. The unused
    MAE leftovers ``backbone.cls_token`` / ``backbone.pos_embed`` are dropped only when the model
    does not keep them. Position embeddings are *not* resampled: a 384 file into a 256 model is a
    shape mismatch, reported by :func:`load_state_dict_into`.
    """
    model_keys = set(model.state_dict())
    out = dict(state_dict)
    for key in ("backbone.cls_token", "backbone.pos_embed"):
        if key in out and key not in model_keys:
            del out[key]
    return out


CLIP_PREFIX = "text_encoder.clip."


def sutrack_filter_fn(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Adapt a SUTrack / UTPTrack-S state dict to ``model`` (pure; returns a new dict).

    Names are used unchanged. The whole CLIP model the official files carry
    (``text_encoder.clip.*``: text and visual towers, method.md 8.3) is not part of the tracking
    network, which takes CLIP text features; those entries are left out here unless the model
    has them (``models.clip_text.ClipTextEncoder.load_clip_state_dict`` reads the text tower).
    What the network needs from CLIP is the feature used without a prompt (``encode_text`` of
    77 zero ids): ``text_encoder.no_prompt`` is computed from the file's CLIP text tower
    (``official.clip_no_prompt_feature``) when the model has that buffer and the file does not.
    """
    model_keys = set(model.state_dict())
    out = {k: v for k, v in state_dict.items() if not k.startswith(CLIP_PREFIX) or k in model_keys}
    no_prompt = "text_encoder.no_prompt"
    if no_prompt in model_keys and no_prompt not in out and any(k.startswith(CLIP_PREFIX) for k in state_dict):
        out[no_prompt] = clip_no_prompt_feature(state_dict, CLIP_PREFIX)
    return out


def project_filter_fn(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The project's own files already use the model's names: identity (pure)."""
    return dict(state_dict)


_FILTERS: dict[str, Callable[[Mapping[str, Tensor], nn.Module], dict[str, Tensor]]] = {
    SOURCE_OSTRACK: ostrack_filter_fn,
    SOURCE_SUTRACK: sutrack_filter_fn,
    SOURCE_PROJECT: project_filter_fn,
    SOURCE_UNKNOWN: project_filter_fn,
}


def infer_variant(state_dict: Mapping[str, Tensor], info: Optional[Mapping[str, Any]] = None) -> str:
    """Registered variant of an OSTrack-layout file, from its own content (``official.py``).

    The weights give the size (``pos_embed_x``); the container's ``net_type`` and pickled
    ``settings`` (``info``, as :func:`read_checkpoint` collects it) tell OSTrack (CE or not)
    from UTPTrack-O, whose state dicts are identical in keys and shapes.

    Raises:
        CheckpointError: not an OSTrack-family file, or a grid no variant has.
    """
    source = detect_source(state_dict)
    if source == SOURCE_SUTRACK:
        return choose_s_variant(state_dict, info or {}).name
    if source != SOURCE_OSTRACK or "backbone.pos_embed_x" not in state_dict:
        raise CheckpointError("cannot infer the variant: not an OSTrack / UTPTrack-O state dict; pass name=")
    return choose_variant(state_dict, info or {}).name


def _settings_info(obj: Any) -> dict[str, Any]:
    """``settings.<field>`` entries from the pickled official ``Settings`` object (a stub):
    its plain fields (``script_name``, ``config_name``, ...) and dicts of them (``output_sz``)."""
    settings = obj.get("settings") if isinstance(obj, Mapping) else None
    state = settings.state if isinstance(settings, StubObject) else None
    if not isinstance(state, Mapping):
        return {}

    def plain(v: Any) -> bool:
        return v is None or isinstance(v, (int, float, str, bool))

    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if plain(value):
            out[f"settings.{key}"] = value
        elif isinstance(value, Mapping) and all(isinstance(k, str) and plain(v) for k, v in value.items()):
            out[f"settings.{key}"] = dict(value)
    return out


def read_checkpoint(path: PathLike, max_inflate_bytes: int = MAX_INFLATE_BYTES) -> Checkpoint:
    """Read any supported weights file (format sniffed from content).

    Args:
        path: official ``.pth.tar`` (torch zip) or project safetensors file.
        max_inflate_bytes: see :func:`safe_torch_load`.
    Returns:
        :class:`Checkpoint`.
    Raises:
        CheckpointError: unsupported format, unsafe/malformed content, no state dict, a digest
            or CRC-32 that does not match (damaged file), a stored config that does not describe
            the stored tensors, sizes beyond the limits.
    """
    p = Path(path)
    fmt = sniff_format(p)
    if fmt == FORMAT_SAFETENSORS:
        return _read_safetensors(p)
    obj, stubs, reader = _unpickle(p, max_inflate_bytes)
    sd = unwrap_state_dict(obj)
    reader.verify_crc(sd.values())
    info: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        info = {
            str(k): v
            for k, v in obj.items()
            if isinstance(v, (int, float, str, bool)) or v is None
        }
        info.update(_settings_info(obj))
    return Checkpoint(format=fmt, state_dict=sd, source=detect_source(sd), info=info, stubs=tuple(stubs))


def _read_safetensors(path: Path) -> Checkpoint:
    """Header first (no data read): digest, then the stored config against the listed tensors."""
    header = read_header(path)
    if verify_digest(header) is None:
        log.info("%s: no recorded %s: integrity not verified (files written before digests, or not by "
                 "utptrack_ros; add one with utptrack_ros.safetensors_header.add_digest)", path, DIGEST_KEY)
    meta = header.metadata
    config = None
    info: dict[str, Any] = {}
    if meta.get(_META_FORMAT) == _META_FORMAT_VALUE:
        if _META_CONFIG not in meta:
            raise CheckpointError(f"{path}: corrupt utptrack_ros metadata: no {_META_CONFIG}")
        config = check_stored_config(meta[_META_CONFIG], header)
        try:
            info = json.loads(meta.get(_META_EXTRA, "{}"))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: corrupt utptrack_ros metadata: {err}") from err
        source = SOURCE_PROJECT
    else:
        info = dict(meta)
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors file: {err}") from err
    if config is None:
        source = detect_source(sd)
    return Checkpoint(format=FORMAT_SAFETENSORS, state_dict=sd, source=source, model_config=config, info=info)


# -- strict loading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyReport:
    """How a state dict matches a model.

    Attributes:
        missing: model keys absent from the state dict.
        unexpected: state-dict keys the model does not have.
        mismatched: ``(key, checkpoint shape, model shape)`` for keys present in both.
    """

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = _REPORT_LIMIT) -> str:
        """Human-readable summary naming the first ``limit`` keys of each kind with shapes."""

        def more(n: int) -> str:
            return f", ... ({n - limit} more)" if n > limit else ""

        parts = []
        if self.mismatched:
            items = "; ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched[:limit])
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {items}{more(len(self.mismatched))}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing: {', '.join(self.missing[:limit])}{more(len(self.missing))}")
        if self.unexpected:
            parts.append(
                f"{len(self.unexpected)} unexpected: {', '.join(self.unexpected[:limit])}{more(len(self.unexpected))}"
            )
        return "; ".join(parts) if parts else "all keys match"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> KeyReport:
    """Compare names and shapes of ``state_dict`` with ``model.state_dict()`` (buffers included)."""
    expected = model.state_dict()
    missing, mismatched = [], []
    for key, ref in expected.items():
        if key not in state_dict:
            missing.append(f"{key} {list(ref.shape)}")
        elif tuple(state_dict[key].shape) != tuple(ref.shape):
            mismatched.append((key, tuple(state_dict[key].shape), tuple(ref.shape)))
    unexpected = [f"{k} {list(v.shape)}" for k, v in state_dict.items() if k not in expected]
    return KeyReport(tuple(missing), tuple(unexpected), tuple(mismatched))


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "name", type(model).__name__)


def load_state_dict_into(model: nn.Module, state_dict: Mapping[str, Any], strict: bool = True) -> KeyReport:
    """Copy weights into ``model`` after checking every key and shape.

    Containers (``net``, ``model``, ``state_dict``) are unwrapped first. Values are converted to
    the model's dtypes by ``load_state_dict``.

    Args:
        model: target module (its ``state_dict()`` defines the expected keys, buffers included,
            e.g. BatchNorm ``num_batches_tracked``).
        state_dict: name -> tensor, or a checkpoint container.
        strict: raise on any missing / unexpected / mismatched key. With ``strict=False`` the
            matching keys are loaded and the rest is logged by name.
    Returns:
        The :class:`KeyReport`.
    Raises:
        CheckpointError: naming the offending keys (strict), or shape mismatches (always: a
            mismatched tensor cannot be loaded).
    """
    sd = unwrap_state_dict(state_dict)
    report = check_state_dict(model, sd)
    name = _model_name(model)
    if strict and not report.ok:
        raise CheckpointError(f"weights do not match model {name!r}: {report.describe()}")
    if report.mismatched:
        raise CheckpointError(f"weights do not match model {name!r}: {report.describe()}")
    if not report.ok:
        log.warning("non-strict load into %r: %s", name, report.describe())
    expected = model.state_dict()
    to_load = {k: v for k, v in sd.items() if k in expected}
    try:
        model.load_state_dict(to_load, strict=strict)
    except RuntimeError as err:  # dtype conversions that torch refuses
        raise CheckpointError(f"cannot copy weights into {name!r}: {err}") from err
    return report


def load_weights(model: nn.Module, path: PathLike, strict: bool = True) -> KeyReport:
    """Read ``path`` (any supported format), apply its family's filter and load into ``model``.

    Raises:
        CheckpointError: unsupported file, or key/shape mismatches.
    """
    ckpt = read_checkpoint(path)
    sd = _FILTERS[ckpt.source](ckpt.state_dict, model)
    report = load_state_dict_into(model, sd, strict=strict)
    log.info(
        "loaded %s weights (%s, %d tensors) from %s into %r",
        ckpt.source,
        ckpt.format,
        len(sd),
        path,
        _model_name(model),
    )
    return report


# -- project checkpoints ----------------------------------------------------------------------


def save_model(model: nn.Module, path: PathLike, extra: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model``'s weights and :class:`ModelConfig` as a safetensors file.

    The stored config carries the keep ratios in use (``model.prune``, which
    ``model.set_prune`` may have changed since the model was built).

    Args:
        model: a UTPTrack (anything with ``.config: ModelConfig``).
        path: output file (any name; the format is recognised by content).
        extra: JSON-serialisable metadata (training recipe, metrics, ...).
    Returns:
        The path written.
    Raises:
        CheckpointError: the model has no ModelConfig or ``extra`` is not JSON-serialisable.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise CheckpointError(f"{type(model).__name__} has no ModelConfig (.config); cannot save a project checkpoint")
    prune = getattr(model, "prune", None)
    if isinstance(prune, PruneConfig) and prune != config.prune:
        config = replace(config, prune=prune)  # keep the run-time budget set with model.set_prune
    try:
        extra_json = json.dumps(dict(extra or {}), sort_keys=True)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"extra metadata is not JSON-serialisable: {err}") from err
    meta = {
        _META_FORMAT: _META_FORMAT_VALUE,
        _META_VERSION: _FORMAT_VERSION,
        _META_CONFIG: json.dumps(to_mapping(config), sort_keys=True),
        _META_EXTRA: extra_json,
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    digest = add_digest(out)
    log.info("saved %r (%d tensors, %s %s) to %s", config.name, len(tensors), DIGEST_KEY, digest[:12], out)
    return out


def load_model(
    path: PathLike, name: Optional[str] = None, device: Union[str, torch.device] = "cpu", strict: bool = True
) -> UTPTrack:
    """Build a UTPTrack from a weights file, strictly loaded, in eval mode.

    The architecture comes from ``name`` if given, else from the config stored in a project
    file, else from an official file's own content: its size from the position embeddings, its
    family and schedule (OSTrack CE / no-CE, UTPTrack-O) from the container's ``net_type`` and
    ``settings`` (:func:`infer_variant`).

    Args:
        path: official ``.pth.tar`` or project safetensors file.
        name: registered variant to build (overrides the stored config).
        device: where to put the model.
        strict: see :func:`load_state_dict_into`.
    Returns:
        The :class:`~utptrack_ros.models.UTPTrack`.
    """
    ckpt = read_checkpoint(path)
    if name is not None:
        model = create_model(name)
    elif ckpt.model_config is not None:
        model = build_model(ckpt.model_config)
    else:
        model = create_model(infer_variant(ckpt.state_dict, ckpt.info))
    sd = _FILTERS.get(ckpt.source, project_filter_fn)(ckpt.state_dict, model)
    load_state_dict_into(model, sd, strict=strict)
    log.info("built %r from %s (%s, source %s)", model.config.name, path, ckpt.format, ckpt.source)
    return model.to(device).eval()
