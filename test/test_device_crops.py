"""Crops on the device (device_crops.py), run on the CPU device: the same pixels as the CPU crop
(preprocess.crop_image + crops_to_tensor) to one grey level, also for crops past every border,
wholly outside the image, up- and down-scaled, and for 6-channel RGB + auxiliary input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utptrack_ros.device_crops import DeviceCropper, FrameUploader, crop_resize, crops_on_device
from utptrack_ros.errors import InputError
from utptrack_ros.preprocess import crop_geometry, crop_image, crops_to_tensor
from utptrack_ros.types import Box

H, W = 97, 131  # odd sizes: rounding of x1/y1 and the +1 border padding both show
IMAGENET_STEP = 1.0 / (255.0 * 0.224)  # one grey level after normalisation (smallest std is largest)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    smooth = np.kron(rng.integers(0, 255, (13, 17, 3)), np.ones((8, 8, 1)))[:H, :W]
    noise = rng.integers(-40, 40, (H, W, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


BOXES = [
    (40.0, 30.0, 20.0, 16.0),      # inside, downscaled crop (side 72 -> 64)
    (50.5, 40.5, 7.0, 9.0),        # small: upscaled (side 32 -> 64), half-pixel centre
    (-15.0, -12.0, 30.0, 25.0),    # past the top-left corner
    (110.0, 80.0, 30.0, 30.0),     # past the bottom-right corner: the +1 padding
    (0.0, 0.0, float(W), float(H)),  # whole image: past every border
    (300.0, 300.0, 10.0, 10.0),    # wholly outside: zeros
    (60.2, 40.7, 15.9, 15.9),      # side exactly 64: no resize
]


def cpu_pixels(image, geoms):
    return np.stack([crop_image(image, g) for g in geoms]).astype(np.float64)


@pytest.mark.parametrize("factor", [2.0, 4.0])
def test_device_crop_pixels_match_the_cpu_crop(image, factor) -> None:
    geoms = [crop_geometry(Box(*b), factor, 64) for b in BOXES]
    if factor == 4.0:
        assert any(g.x1 < 0 for g in geoms) and any(g.x1 + g.side > W for g in geoms)
    expected = cpu_pixels(image, geoms)
    got = crop_resize(torch.from_numpy(image), geoms).numpy().astype(np.float64)
    assert got.shape == expected.shape == (len(BOXES), 64, 64, 3)
    diff = np.abs(got - expected)
    assert diff.max() <= 1.0, f"max difference {diff.max()} grey levels (crop {np.unravel_index(diff.argmax(), diff.shape)})"
    # OpenCV's fixed-point arithmetic is reproduced (bit-identical with this OpenCV build; one
    # without its SIMD kernels rounds ~12 % of pixels the other way, by one level)
    assert (diff > 0).mean() < 0.01, f"{(diff > 0).mean():.1%} of the pixels differ by one grey level"
    assert np.all(got[5] == 0)  # wholly outside
    assert np.array_equal(got[-1], expected[-1])  # no resize: exact pixels


def test_a_one_pixel_shift_would_be_caught(image) -> None:
    geom = crop_geometry(Box(40.0, 30.0, 20.0, 16.0), 4.0, 64)
    shifted = geom.__class__(geom.cx, geom.cy, geom.side, geom.x1 + 1, geom.y1, geom.out_size)
    diff = np.abs(crop_resize(torch.from_numpy(image), [shifted]).numpy() - cpu_pixels(image, [geom]))
    assert diff.max() > 1.0


def test_the_last_column_and_row_follow_the_official_padding(image) -> None:
    geom = crop_geometry(Box(W - 20.0, H - 20.0, 16.0, 16.0), 2.0, 32)  # side 32, reaches the corner
    assert geom.x1 + geom.side >= W and geom.side == geom.out_size
    got = crop_resize(torch.from_numpy(image), [geom]).numpy()[0]
    exp = crop_image(image, geom)
    assert np.array_equal(got, exp)
    last_col = (W - 1) - geom.x1
    assert np.all(got[:, last_col] == 0)  # the image's last column is padding, as in the official crop


@pytest.mark.parametrize("in_chans", [3, 6])
def test_normalised_model_input_matches_crops_to_tensor(image, in_chans) -> None:
    aux = np.ascontiguousarray(image[:, :, ::-1])  # any second 3-channel uint8 image
    geoms = [crop_geometry(Box(*b), 4.0, 64) for b in BOXES[:4]]
    rgb = [crop_image(image, g) for g in geoms]
    aux_crops = [crop_image(aux, g) for g in geoms]
    expected = crops_to_tensor(rgb, aux_crops, in_chans, torch.device("cpu"))
    got = crops_on_device(torch.from_numpy(image), geoms, in_chans, torch.from_numpy(aux))
    assert got.shape == expected.shape == (4, in_chans, 64, 64)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - expected).abs().max().item() <= IMAGENET_STEP * 1.0001
    if in_chans == 6:  # no aux: the RGB crop fills both halves
        both = crops_on_device(torch.from_numpy(image), geoms, 6)
        assert torch.equal(both[:, :3], both[:, 3:])


def test_uploads_and_refusals(image) -> None:
    up = FrameUploader("cpu")
    assert not up.pinned
    frame = up.upload(image)
    assert frame.dtype == torch.uint8 and np.array_equal(frame.numpy(), image)
    readonly = image.copy()
    readonly.flags.writeable = False
    assert np.array_equal(up.upload(readonly).numpy(), image)
    with pytest.raises(InputError, match="uint8"):
        up.upload(image.astype(np.float32))
    cropper = DeviceCropper("cpu")
    geoms = [crop_geometry(Box(*b), 4.0, 64) for b in BOXES[:2]]
    out = cropper.crops(image, None, geoms, 3)
    assert out.shape == (2, 3, 64, 64) and cropper.uploads == 1
    with pytest.raises(InputError, match="out_size"):
        crop_resize(frame, [geoms[0], crop_geometry(Box(*BOXES[0]), 2.0, 32)])
