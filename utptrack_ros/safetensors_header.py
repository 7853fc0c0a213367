"""A safetensors file's header, read without loading tensor data, and its integrity digest.

Layout (safetensors format): 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``name -> {dtype, shape, data_offsets}`` plus an optional ``__metadata__`` string map, padded
with spaces), then the data buffer; offsets are relative to the buffer.

The digest (:data:`DIGEST_KEY` in ``__metadata__``) is SHA-256 over a canonical JSON of the
header without the digest itself (every tensor's dtype, shape and offsets, and the other
metadata) followed by the whole data buffer. It detects damage (a flipped bit, a truncated or
spliced copy), not a deliberate forgery: whoever can rewrite the file can rewrite the digest
(docs/security.md). :func:`add_digest` records it by rewriting the header only: every tensor
byte and offset stays as it was.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .errors import CheckpointError

PathLike = Union[str, os.PathLike]

DIGEST_KEY = "tensors_sha256"
MAX_HEADER_BYTES = 100 * 2**20  # the limit the safetensors library itself enforces

ITEM_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a safetensors header says, checked against the file's size.

    Attributes:
        path: the file.
        data_start: byte offset of the data buffer (8 + header length).
        data_size: bytes in the data buffer (to the end of the file).
        tensors: name -> ``{"dtype", "shape", "data_offsets"}`` exactly as stored.
        metadata: ``__metadata__`` (string -> string), ``{}`` if absent.
    """

    path: Path
    data_start: int
    data_size: int
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(entry["shape"]) for name, entry in self.tensors.items()}

    def numel(self) -> int:
        return sum(math.prod(entry["shape"]) for entry in self.tensors.values())


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: malformed safetensors header: {what}")


def _check_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _fail(path, f"entry {name!r:.80} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in ITEM_BYTES:
        raise _fail(path, f"{name!r:.80} has unsupported dtype {dtype!r:.20}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise _fail(path, f"{name!r:.80} shape {shape!r:.80}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise _fail(path, f"{name!r:.80} data_offsets {offsets!r:.80}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise _fail(path, f"{name!r:.80} bytes [{begin}, {end}) outside the {data_size}-byte data buffer")
    if end - begin != math.prod(shape) * ITEM_BYTES[dtype]:
        raise _fail(path, f"{name!r:.80}: {end - begin} bytes for shape {shape} of {dtype}")


def read_header(path: PathLike) -> SafetensorsHeader:
    """Parse and check the header of ``path`` (reads at most :data:`MAX_HEADER_BYTES`).

    Raises:
        CheckpointError: not a safetensors file, or a header that does not fit the file.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                raise _fail(p, "shorter than 8 bytes")
            (n,) = struct.unpack("<Q", head)
            if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
                raise _fail(p, f"header length {n} for a {size}-byte file")
            raw = fh.read(n)
    except OSError as err:
        raise CheckpointError(f"{p}: cannot read: {err}") from err
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(p, f"not JSON ({err})") from err
    if not isinstance(header, dict):
        raise _fail(p, "not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise _fail(p, "__metadata__ is not a string -> string map")
    data_size = size - 8 - n
    for name, entry in header.items():
        _check_entry(p, name, entry, data_size)
    return SafetensorsHeader(p, 8 + n, data_size, header, metadata)


def tensors_digest(header: SafetensorsHeader) -> str:
    """SHA-256 of the header (tensor table and metadata, without :data:`DIGEST_KEY`) and the data."""
    covered = {
        "metadata": {k: v for k, v in header.metadata.items() if k != DIGEST_KEY},
        "tensors": header.tensors,
    }
    h = hashlib.sha256(json.dumps(covered, sort_keys=True, separators=(",", ":")).encode())
    with open(header.path, "rb") as fh:
        fh.seek(header.data_start)
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_digest(header: SafetensorsHeader) -> Optional[str]:
    """Check the recorded digest against the file.

    Returns:
        The digest, or None when the file records none (nothing to verify).
    Raises:
        CheckpointError: naming the file and both digests, when they differ.
    """
    recorded = header.metadata.get(DIGEST_KEY)
    if recorded is None:
        return None
    actual = tensors_digest(header)
    if actual != recorded:
        raise CheckpointError(
            f"{header.path}: the weights are damaged or were modified: recorded SHA-256 {recorded}, "
            f"file gives {actual}; restore the file from its source (reinstall the package, or the "
            "training run's output)"
        )
    return actual


def add_digest(path: PathLike, out: Optional[PathLike] = None) -> str:
    """Record :data:`DIGEST_KEY` in ``path``'s metadata (written to ``out``, default in place).

    Only the header changes: the data buffer is copied byte for byte and every tensor keeps its
    dtype, shape and offsets. The file is replaced atomically.

    Returns:
        The digest.
    """
    src = Path(path)
    dst = Path(out) if out is not None else src
    header = read_header(src)
    digest = tensors_digest(header)
    table: dict[str, Any] = {"__metadata__": {**header.metadata, DIGEST_KEY: digest}, **header.tensors}
    text = json.dumps(table, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data buffer starts 8-byte aligned, as safetensors writes it
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out_fh, open(src, "rb") as in_fh:
            out_fh.write(struct.pack("<Q", len(text)) + text)
            in_fh.seek(header.data_start)
            while chunk := in_fh.read(_CHUNK):
                out_fh.write(chunk)
        os.chmod(tmp, dst.stat().st_mode & 0o7777 if dst.exists() else 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest
