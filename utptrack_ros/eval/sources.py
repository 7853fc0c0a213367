"""Sequence sources of an evaluation: what the runner reads from a sequence (``SequenceLike``),
a sequence or a picklable opener of one (``SequenceSource``), and the openers for paths given on
a command line (``sequence_sources``: sequence folders, rosbag2 bags, folders of sequences).

An opener is a zero-argument callable (e.g. ``functools.partial(load_bag, path)``), so a bag is
read in the worker process that runs it, not pickled across.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol, Union

import numpy as np

from ..data import load_bag, load_folder
from ..errors import ConfigError, InputError


class SequenceLike(Protocol):
    """What the runner reads from a sequence (``utptrack_ros.data`` ``Sequence``)."""

    name: str
    gt: np.ndarray
    absent: np.ndarray

    def rgb(self, i: int) -> np.ndarray: ...

    def aux(self, modality: Any, i: int) -> Optional[np.ndarray]: ...

    def stamp_ns(self, i: int) -> int: ...


SequenceSource = Union[SequenceLike, Callable[[], SequenceLike]]


def open_source(source: SequenceSource) -> Any:
    """The sequence behind ``source`` (called as is when it is not a sequence already).

    Raises:
        ConfigError: ``source`` is neither a sequence nor a callable opening one.
    """
    if callable(getattr(source, "rgb", None)):
        return source
    if callable(source):
        return source()
    raise ConfigError(f"not a sequence or a sequence opener: {source!r}")


def describe_source(source: SequenceSource) -> str:
    """A human-readable origin of a source (path for ``partial(loader, path)``)."""
    if isinstance(source, functools.partial) and source.args:
        return str(source.args[0])
    return str(getattr(source, "path", None) or getattr(source, "root", None) or getattr(source, "name", repr(source)))


def open_sequences(sources: Iterable[SequenceSource]) -> dict[str, Any]:
    """``{name: sequence}`` of ``sources``, opened in this process (lazy views; the report's frame strips)."""
    opened: dict[str, Any] = {}
    for src in sources:
        seq = open_source(src)
        opened[str(seq.name)] = seq
    return opened


def is_bag(path: Path) -> bool:
    """A rosbag2 bag: a folder with ``metadata.yaml``, or a single ``.mcap`` / ``.db3`` file."""
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    return path.is_dir() and (path / "metadata.yaml").is_file()


def is_sequence_folder(path: Path) -> bool:
    """A sequence folder of the project's layout (has ``color/``)."""
    return path.is_dir() and (path / "color").is_dir()


def sequence_sources(paths: Iterable[Path]) -> list[SequenceSource]:
    """Picklable openers (``partial(load_folder|load_bag, path)``) for the given paths: a
    sequence folder, a bag, or a folder of sequence folders (its ``list.txt`` if present, else
    every sub-folder with ``color/``).

    Raises:
        InputError: a path that is no sequence, bag or folder of sequences.
    """
    sources: list[SequenceSource] = []
    for path in paths:
        if is_bag(path):
            sources.append(functools.partial(load_bag, path))
        elif is_sequence_folder(path):
            sources.append(functools.partial(load_folder, path))
        elif path.is_dir():
            listed = path / "list.txt"
            if listed.is_file():
                names = [n.strip() for n in listed.read_text().splitlines() if n.strip()]
                children = [path / n for n in names]
            else:
                children = sorted(c for c in path.iterdir() if is_sequence_folder(c))
            if not children:
                raise InputError(f"{path}: no sequence folders (color/) or bags found")
            sources.extend(functools.partial(load_folder, c) for c in children)
        else:
            raise InputError(f"{path}: not a sequence folder, a rosbag2 bag or a folder of sequences")
    return sources
