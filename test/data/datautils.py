"""Helpers for the data tests (import as ``data.datautils``; pytest runs with --import-mode=importlib
and pythonpath=test): small generated sequences (160x120, short) cached per process."""
from __future__ import annotations

import functools

import numpy as np

from utptrack_ros.data import TrackingSequence, SequenceSpec, generate

SMALL = (160, 120)


@functools.lru_cache(maxsize=None)
def _generated(seed: int, challenges: tuple, length: int, size: tuple[int, int]) -> TrackingSequence:
    return generate(SequenceSpec(seed=seed, challenges=dict(challenges), length=length, size=size))


def make(seed: int, challenges: dict | None = None, length: int = 24, size: tuple[int, int] = SMALL) -> TrackingSequence:
    """Generated sequence (cached: tests must not mutate it)."""
    return _generated(seed, tuple(sorted((challenges or {}).items())), length, size)


def small_seq() -> TrackingSequence:
    """A short sequence with every modality, distractors (prompt) and an out-of-view stretch (absent)."""
    return make(7, {"distractors": 1.0, "out_of_view": 1.0}, length=30)


def assert_same_sequence(a: TrackingSequence, b: TrackingSequence, *, rgb_tol: float = 0.0, gt_tol: float = 0.0) -> None:
    """Equal ground truth, flags, prompt, stamps, attributes and frames (RGB within ``rgb_tol`` mean abs)."""
    assert a.length == b.length
    np.testing.assert_allclose(a.gt, b.gt, atol=gt_tol, equal_nan=True)
    np.testing.assert_array_equal(a.absent, b.absent)
    np.testing.assert_array_equal(a.stamps_ns, b.stamps_ns)
    assert a.prompt == b.prompt
    assert a.modalities == b.modalities
    for i in range(a.length):
        ra, rb = a.rgb(i), b.rgb(i)
        assert ra.shape == rb.shape and ra.dtype == rb.dtype == np.uint8
        diff = np.abs(ra.astype(np.int16) - rb).mean()
        assert diff <= rgb_tol, f"frame {i}: RGB mean abs diff {diff}"
        for m in a.modalities:
            xa, xb = a.aux(m, i), b.aux(m, i)
            assert xa.dtype == xb.dtype and xa.shape == xb.shape, m
            np.testing.assert_array_equal(xa, xb, err_msg=f"{m.value} frame {i}")


def box_region(seq: TrackingSequence, i: int, pad: int = 0) -> tuple[slice, slice]:
    x, y, w, h = seq.gt[i]
    W, H = seq.image_size
    rows = slice(max(0, int(y) - pad), min(H, int(y + h) + pad))
    return rows, slice(max(0, int(x) - pad), min(W, int(x + w) + pad))


