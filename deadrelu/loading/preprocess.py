"""Eval-time image preprocessing: resize the short side, centre crop, normalise.

Trained vision models expect their inputs prepared as in evaluation: usually the
short side resized (keeping the aspect ratio) and a centre crop, not the whole
image squashed to a square. Two sources of such a transform:

* a model directory's ``preprocessor_config.json`` (written by ``transformers``
  image processors: ``size``, ``crop_size``, ``crop_pct``, ``image_mean``,
  ``image_std``, ``resample``), read as plain JSON, so no image-processor code runs;
* ``--center-crop H[xW]``: the usual eval transform, the short side resized to
  the crop divided by 0.875 (torchvision's and timm's default ratio), then cropped.

The transform only shapes the image; normalisation stays with ``--normalize``
(which the preprocessor config fills in when the flag is not given).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deadrelu.errors import ConfigError, DataError
from deadrelu.loading.imports import one_line

#: torchvision/timm evaluate on a centre crop of 87.5% of the resized short side.
CROP_FRACTION = 0.875
PREPROCESSOR_CONFIG = "preprocessor_config.json"


@dataclass(frozen=True)
class ImageTransform:
    """How one image is shaped before it becomes a tensor.

    Attributes:
        resize: an exact ``(height, width)`` to resize to (aspect ratio not kept), or None.
        short_side: resize so that the short side has this length (aspect kept), or None.
        crop: the centre crop ``(height, width)`` taken afterwards, or None.
        resample: a Pillow resampling filter code (2 = bilinear, 3 = bicubic).
        mean, std: per-channel normalisation from the preprocessor config, if any.
        source: where the transform came from, for the report's notes.
    """

    resize: tuple[int, int] | None = None
    short_side: int | None = None
    crop: tuple[int, int] | None = None
    resample: int = 2
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = "--center-crop"

    @property
    def output_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of every transformed image, when it is fixed."""
        return self.crop or self.resize

    def apply(self, image: Any) -> Any:
        """The transformed Pillow image."""
        if self.resize is not None:
            image = image.resize((self.resize[1], self.resize[0]), self.resample)
        if self.short_side is not None:
            width, height = image.size
            scale = self.short_side / min(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            if size != (width, height):
                image = image.resize(size, self.resample)
        if self.crop is not None:
            crop_h, crop_w = self.crop
            width, height = image.size
            if crop_h > height or crop_w > width:
                image = image.resize((max(width, crop_w), max(height, crop_h)), self.resample)
                width, height = image.size
            top = int(round((height - crop_h) / 2.0))
            left = int(round((width - crop_w) / 2.0))
            image = image.crop((left, top, left + crop_w, top + crop_h))
        return image

    def describe(self) -> str:
        steps = []
        if self.resize is not None:
            steps.append(f"resized to {self.resize[0]}x{self.resize[1]}")
        if self.short_side is not None:
            steps.append(f"short side resized to {self.short_side}")
        if self.crop is not None:
            steps.append(f"centre-cropped to {self.crop[0]}x{self.crop[1]}")
        return f"images {', '.join(steps) or 'unchanged'} (from {self.source})"

    def normalize_spec(self) -> str | None:
        """The ``--normalize`` value for this config's mean and std, if it has them."""
        if self.mean is None or self.std is None:
            return None
        return f"{'/'.join(f'{v:g}' for v in self.mean)},{'/'.join(f'{v:g}' for v in self.std)}"


def center_crop(size: tuple[int, int]) -> ImageTransform:
    """The usual eval transform for a crop of ``size``: short side to crop / 0.875, then crop."""
    return ImageTransform(short_side=round(min(size) / CROP_FRACTION), crop=size)


def from_preprocessor_config(folder: Path) -> ImageTransform | None:
    """The transform a model directory's ``preprocessor_config.json`` describes, if it has one.

    Raises:
        DataError: the file exists but is not valid JSON.
    """
    path = folder / PREPROCESSOR_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({one_line(exc)})",
                        "fix or remove it, or pass --image-size / --center-crop") from exc
    if not isinstance(config, dict):
        return None
    size = config.get("size") if config.get("do_resize", True) else None
    crop = _hw(config.get("crop_size")) if config.get("do_center_crop", False) else None
    resize: tuple[int, int] | None = None
    short: int | None = None
    if isinstance(size, dict) and "shortest_edge" in size:
        short = int(size["shortest_edge"])
        crop_pct = config.get("crop_pct")
        if isinstance(crop_pct, (int, float)) and 0 < crop_pct < 1 and crop is None and short < 384:
            # ConvNeXt-style: resize to shortest_edge / crop_pct, then crop shortest_edge
            crop = (short, short)
            short = int(short / crop_pct)
    elif size is not None:
        resize = _hw(size)
    mean, std = config.get("image_mean"), config.get("image_std")
    normalise = config.get("do_normalize", True) and isinstance(mean, list) and isinstance(std, list)
    resample = config.get("resample")
    return ImageTransform(
        resize=resize, short_side=short, crop=crop,
        resample=int(resample) if isinstance(resample, int) else 2,
        mean=tuple(float(v) for v in mean) if normalise and mean else None,
        std=tuple(float(v) for v in std) if normalise and std else None,
        source=PREPROCESSOR_CONFIG,
    )


def _hw(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, dict) and "shortest_edge" in value:
        edge = int(value["shortest_edge"])
        return edge, edge
    return None


def parse_crop(value: str | None) -> ImageTransform | None:
    """``--center-crop 224`` or ``224x160`` -> the usual eval transform.

    Raises:
        ConfigError: not a size.
    """
    if value is None:
        return None
    from deadrelu.loading.data import parse_image_size

    try:
        size = parse_image_size(value)
    except ConfigError:
        raise ConfigError(f"--center-crop {value!r} is not a size",
                          "pass --center-crop 224 or --center-crop 224x160") from None
    return center_crop(size) if size is not None else None
