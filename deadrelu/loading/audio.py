"""Stream a folder of ``.wav``/``.flac`` files (flat, or one subfolder per class) as batches.

Files are read with ``soundfile`` (the ``audio`` extra), mixed down to mono, and
resampled to the model's rate when its directory has a feature extractor
(``preprocessor_config.json`` with a ``sampling_rate``). With the extractor each
batch is what it returns for the batch's waveforms (``input_values`` or
``input_features``, and an ``attention_mask`` when it makes one), called once per
batch; without one a batch is the waveforms zero-padded to the longest, ``(N, 1, L)``.
Only the file list is built up front.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import DataError
from deadrelu.loading.imports import one_line
from deadrelu.loading.source import Batch, DataSource

if TYPE_CHECKING:
    import numpy as np

AUDIO_SUFFIXES = frozenset({".wav", ".flac"})


def list_audio(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursively, hidden entries skipped), sorted by relative path."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder, name) for name in files
                     if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_SUFFIXES)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def load_feature_extractor(folder: Path) -> Any:
    """The feature extractor saved in a model directory, or None when it has none.

    Raises:
        DataError: it has one that cannot be loaded.
    """
    import json

    config_path = folder / "preprocessor_config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(config, dict) or "sampling_rate" not in config:
        return None  # an image processor
    try:
        from transformers import AutoFeatureExtractor

        from deadrelu.loading.hf import _quiet_transformers

        with _quiet_transformers():
            return AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True,
                                                        trust_remote_code=False)
    except Exception as exc:
        raise DataError(f"the feature extractor in {config_path} cannot be loaded: "
                        f"{type(exc).__name__}: {one_line(exc)}",
                        "re-save it with save_pretrained, or remove preprocessor_config.json") from exc


def open_audio(
    path: Path,
    files: list[Path],
    *,
    batch_size: int,
    limit: int | None,
    feature_extractor: Any = None,
) -> DataSource:
    """A :class:`DataSource` over audio ``files`` (already listed from ``path``).

    Raises:
        DataError: soundfile missing, the first file unreadable, or files of
            different sampling rates without a feature extractor to resample to.
    """
    soundfile = _soundfile()
    if limit is not None:
        files = files[:limit]
    rates = {_info(soundfile, f).samplerate for f in files[:64]}
    target = getattr(feature_extractor, "sampling_rate", None)
    notes: list[str] = []
    if target is None and len(rates) > 1:
        raise DataError(f"the audio files in {path} have different sampling rates "
                        f"({', '.join(f'{r:,} Hz' for r in sorted(rates))})",
                        "resample them to one rate, or scan a model directory whose feature "
                        "extractor names its rate")
    rate = int(target or rates.pop())
    resampler = _resampler()
    if target is not None and any(r != target for r in rates):
        notes.append(f"audio resampled to {rate:,} Hz (the feature extractor's rate) "
                     f"with {resampler[1]}")
    if feature_extractor is not None:
        notes.append(f"features from {type(feature_extractor).__name__}")
    else:
        notes.append("waveforms zero-padded per batch to (N, 1, longest)")

    def batches() -> Iterator[Batch]:
        for start in range(0, len(files), batch_size):
            waves = [_read(soundfile, f, rate, resampler[0]) for f in files[start:start + batch_size]]
            yield _batch(waves, rate, feature_extractor, path)

    return DataSource(batches, description=f"{len(files):,} audio files from {path} ({rate:,} Hz)",
                      num_samples=len(files), sample_shape=None, notes=notes)


def _batch(waves: list[np.ndarray], rate: int, extractor: Any, path: Path) -> Batch:
    import numpy as np
    import torch

    if extractor is None:
        longest = max(len(w) for w in waves)
        out = np.zeros((len(waves), 1, longest), dtype=np.float32)
        for i, wave in enumerate(waves):
            out[i, 0, : len(wave)] = wave
        return torch.from_numpy(out)
    try:
        features = extractor(waves, sampling_rate=rate, padding=True, return_tensors="pt")
    except Exception as exc:
        raise DataError(f"the feature extractor raised {type(exc).__name__} on {path}: "
                        f"{one_line(exc)}", "check that the audio suits the model") from exc
    return {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}


def _read(soundfile: Any, file: Path, rate: int, resample: Any) -> np.ndarray:
    import numpy as np

    try:
        data, file_rate = soundfile.read(str(file), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(f"audio file {file} cannot be read ({one_line(exc)})",
                        "remove or replace the file") from exc
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != rate:
        wave = resample(wave, int(file_rate), rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _info(soundfile: Any, file: Path) -> Any:
    try:
        return soundfile.info(str(file))
    except Exception as exc:
        raise DataError(f"audio file {file} cannot be read ({one_line(exc)})",
                        "remove or replace the file") from exc


def _resampler() -> tuple[Any, str]:
    """A band-limited polyphase resampler (scipy) when available, else linear interpolation."""
    try:
        from scipy.signal import resample_poly
    except ImportError:
        return _linear, "linear interpolation (install scipy for band-limited resampling)"

    def poly(wave: np.ndarray, source: int, target: int) -> np.ndarray:
        g = math.gcd(source, target)
        return resample_poly(wave, target // g, source // g)

    return poly, "scipy's polyphase filter"


def _linear(wave: np.ndarray, source: int, target: int) -> np.ndarray:
    import numpy as np

    length = max(1, round(len(wave) * target / source))
    positions = np.arange(length) * (source / target)
    return np.interp(positions, np.arange(len(wave)), wave)


def _soundfile() -> Any:
    try:
        import soundfile
    except (ImportError, OSError) as exc:
        raise DataError("reading .wav/.flac files needs soundfile, which is not installed",
                        "pip install 'deadrelu[audio]'") from exc
    return soundfile
