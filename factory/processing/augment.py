"""The eleven augmentation filters of Stielow et al., MLST 2020 (App. D) for scattering images.

Each filter is ``f(image, rng) -> image`` on one network-ready image (values in [0, max]);
its random parameters come from ``rng``, which the augmentation step derives from
(seed, output sample index), so an augmented set is reproducible from its seed.  Limits are
module constants so tests can check each filter's defining property.

 0 identity              exact copy
 1 uniform_noise         every pixel moves by U(-a, a), a <= max/2; clipped to [0, max]
 2 salt_pepper           a fraction <= SP_MAX of pixels set to the image's min or max
 3 gaussian_blur         Gaussian kernel, sigma up to BLUR_MAX = 5 px
 4 jitter                each row and column displaced by up to JITTER_MAX px (detector jitter)
 5 center_crop           only a central square of random half-width survives (finite detector)
 6 central_hole          zero inside a random radius (beam stop shadow)
 7 shift                 translation by up to SHIFT_MAX px, zero fill (beam pointing)
 8 uneven_sensitivity    random rectangular detector regions attenuated by 0.1..0.9
 9 random_combination    a random subset of 1-8 in random order
10 experimental          a fixed order resembling experiment: shift, sensitivity, hole, crop,
                         blur, noise
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

NOISE_MAX = 0.5     # of the image max
SP_MAX = 0.05       # fraction of pixels
BLUR_MAX = 5.0      # px
JITTER_MAX = 2.0    # px
SHIFT_MAX = 0.1     # of the image size
HOLE_MAX = 0.15     # of the image size (radius)
CROP_MIN = 0.3      # half-width, of the image size


def identity(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img.copy()


def uniform_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    peak = float(img.max())
    a = rng.uniform(0.0, NOISE_MAX) * peak
    return np.clip(img + rng.uniform(-a, a, img.shape), 0.0, peak)


def salt_pepper(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.copy()
    hit = rng.random(img.shape) < rng.uniform(0.0, SP_MAX)
    salt = rng.random(img.shape) < 0.5
    out[hit & salt] = img.max()
    out[hit & ~salt] = img.min()
    return out


def gaussian_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return gaussian_filter(img, sigma=rng.uniform(0.5, BLUR_MAX), mode="constant")


def jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    dy = rng.uniform(-JITTER_MAX, JITTER_MAX, size=w)[None, :]  # per column
    dx = rng.uniform(-JITTER_MAX, JITTER_MAX, size=h)[:, None]  # per row
    yy, xx = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    return map_coordinates(img, [yy + dy, xx + dx], order=1, mode="constant")


def _radius(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    return np.hypot(yy, xx)


def center_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    half = rng.uniform(CROP_MIN, 0.5) * min(h, w)
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    return np.where((np.abs(yy) <= half) & (np.abs(xx) <= half), img, 0.0)


def central_hole(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r = rng.uniform(0.02, HOLE_MAX) * min(img.shape)
    return np.where(_radius(img.shape) <= r, 0.0, img)


def shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    dy = int(rng.integers(-int(SHIFT_MAX * h), int(SHIFT_MAX * h) + 1))
    dx = int(rng.integers(-int(SHIFT_MAX * w), int(SHIFT_MAX * w) + 1))
    out = np.zeros_like(img)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = img[ys, xs]
    return out


def uneven_sensitivity(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    gain = np.ones_like(img)
    for _ in range(int(rng.integers(1, 5))):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        gain[y0:y0 + int(rng.integers(h // 8, h // 2)), x0:x0 + int(rng.integers(w // 8, w // 2))] *= rng.uniform(0.1, 0.9)
    return img * gain


SINGLE: list[Callable] = [uniform_noise, salt_pepper, gaussian_blur, jitter, center_crop, central_hole,
                          shift, uneven_sensitivity]


def random_combination(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(1, len(SINGLE) + 1))
    for i in rng.permutation(len(SINGLE))[:k]:
        img = SINGLE[int(i)](img, rng)
    return img


EXPERIMENTAL = [shift, uneven_sensitivity, central_hole, center_crop, gaussian_blur, uniform_noise]


def experimental(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    for f in EXPERIMENTAL:
        img = f(img, rng)
    return img


FILTERS: list[Callable] = [identity, *SINGLE, random_combination, experimental]
FILTER_NAMES = [f.__name__ for f in FILTERS]


def augment(img: np.ndarray, filter_id: int, rng: np.random.Generator) -> np.ndarray:
    """Apply filter ``filter_id`` (0..10) to a float image; float32 out."""
    if not 0 <= filter_id < len(FILTERS):
        raise ValueError(f"filter {filter_id}: choose 0..{len(FILTERS) - 1} ({', '.join(FILTER_NAMES)})")
    return FILTERS[filter_id](np.asarray(img, dtype=np.float64), rng).astype(np.float32)


# -- a measured detector after the filters ------------------------------------------------
def detector_response(name: str):
    """The :class:`~factory.msft.detector_response.DetectorResponse` called ``name``."""
    from factory.msft.detector_response import DETECTORS

    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def check_detector(name: str, shape: tuple[int, ...], preprocessing: dict | None) -> None:
    """Refuse a detector that is unknown, of another image size, or a source that is not a
    log-scaled scattering store (whose images :func:`through_detector` turns back into intensities)."""
    det = detector_response(name)
    if tuple(shape) != tuple(det.shape):
        raise ValueError(f"detector {name!r} is {det.shape[0]} x {det.shape[1]} pixels; the images are "
                         f"{' x '.join(map(str, shape))}")
    if not preprocessing or preprocessing.get("name") != "scatter":
        raise ValueError(f"detector {name!r} needs a store preprocessed with --mode scatter "
                         f"(log10(I / max I) on 0..1); this one records {preprocessing and preprocessing.get('name')!r}")


def through_detector(images: np.ndarray, name: str, log_floor: float, filters, rngs) -> np.ndarray:
    """Scattering images (log10(I / max I) clipped at ``log_floor`` on 0..1) as the measured
    detector ``name`` shows them, with augmentation ``filters[j]`` applied in between:
    intensity -> the detector's orientation, centring, saturation and display (every pixel) ->
    the filter (noise, blur, shift, ... of the pattern) -> the detector's valid pixels, which
    stay where they are in the lab."""
    det = detector_response(name)
    intensity = 10.0 ** (log_floor * (1.0 - np.asarray(images, dtype=np.float64)))
    shown = det.apply(intensity, masked=False)
    mask = det.mask()
    return np.stack([augment(shown[j], int(f), rng) * mask for j, (f, rng) in enumerate(zip(filters, rngs))])
