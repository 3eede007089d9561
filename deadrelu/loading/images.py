"""Stream a folder of image files (flat, or one subfolder per class) as batches.

Only the file list is built up front; each batch opens, converts and closes
its own files, so memory stays at one batch however large the folder. Pixels
are scaled to [0, 1] (as torchvision's ``ToTensor`` does) before any
normalisation; order is sorted by relative path, so runs are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import DataError
from deadrelu.loading.extras import require
from deadrelu.loading.imports import one_line
from deadrelu.loading.source import DataSource

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deadrelu.loading.preprocess import ImageTransform

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, hidden entries skipped), sorted by relative path."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(folder, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def open_images(
    path: Path,
    *,
    files: list[Path],
    batch_size: int,
    limit: int | None,
    image_size: tuple[int, int] | None,
    channels: int | None,
    transform: ImageTransform | None = None,
) -> DataSource:
    """A :class:`DataSource` over ``files`` (already listed from ``path``).

    ``transform`` (see :mod:`deadrelu.loading.preprocess`) shapes each image first,
    e.g. the short side resized and a centre crop; ``image_size`` squashes instead.

    Raises:
        DataError: Pillow missing, or the first image unreadable.
    """
    _pillow()  # fail now, not at the first batch
    if limit is not None:
        files = files[:limit]
    mode = _MODES[channels or 3]
    first = _read(files[0], mode=mode, size=image_size, expected=None, transform=transform)
    height, width = first.shape[-2:]
    expected = image_size or (height, width)
    notes: list[str] = []
    if image_size is not None:
        notes.append(f"images resized to {image_size[0]}x{image_size[1]} (height x width)")
    if transform is not None:
        notes.append(transform.describe())

    def batches() -> Iterator[torch.Tensor]:
        import numpy as np
        import torch

        for start in range(0, len(files), batch_size):
            arrays = [
                _read(f, mode=mode, size=image_size, expected=expected, transform=transform)
                for f in files[start : start + batch_size]
            ]
            yield torch.from_numpy(np.stack(arrays))

    classes = {f.parent for f in files} - {path} if path.is_dir() else set()
    layout = f" in {len(classes)} class folders" if classes else ""
    where = path.name if path.is_file() else f"{path}"
    description = (
        f"{len(files):,} image{'s' if len(files) != 1 else ''} from {where}{layout} "
        f"({mode}, {expected[0]}x{expected[1]})"
    )
    return DataSource(
        batches,
        description=description,
        num_samples=len(files),
        sample_shape=tuple(int(d) for d in first.shape),
        notes=notes,
    )


def _read(
    file: Path, *, mode: str, size: tuple[int, int] | None, expected: tuple[int, int] | None,
    transform: ImageTransform | None = None,
) -> np.ndarray:
    """One image as a float32 ``(C, H, W)`` array in [0, 1]."""
    import numpy as np

    image_module = _pillow()
    try:
        with image_module.open(file) as image:
            image.load()
            if transform is not None:
                image = transform.apply(image)
            if size is not None:
                image = image.resize((size[1], size[0]), image_module.Resampling.BILINEAR)
            elif expected is not None and (image.height, image.width) != expected:
                raise DataError(
                    f"{file} is {image.height}x{image.width} but earlier images are "
                    f"{expected[0]}x{expected[1]} (height x width)",
                    "pass --image-size H or HxW to resize all images to one size",
                )
            array = _to_array(image, mode)
    except DataError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad files
        raise DataError(
            f"image {file} cannot be read ({one_line(exc)})",
            "remove or replace the file, or point --data at a folder without it",
        ) from exc
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # to (C, H, W)
    return np.ascontiguousarray(array, dtype=np.float32)


def _to_array(image: Any, mode: str) -> np.ndarray:
    import numpy as np

    if image.mode in _SIXTEEN_BIT:
        # 16-bit greyscale: converting to "L" would clip, so scale by hand.
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        if mode == "L":
            return grey
        planes = [grey] * 3 + ([np.ones_like(grey)] if mode == "RGBA" else [])
        return np.stack(planes, axis=-1)
    return np.asarray(image.convert(mode), dtype=np.float32) / 255.0


def _pillow() -> Any:
    return require("PIL.Image", "images", "reading image files needs Pillow, which is not installed")
