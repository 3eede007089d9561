"""Images prepared as in evaluation: a model directory's preprocessor_config.json, or
``--center-crop``; checked pixel for pixel against the same steps done by hand with Pillow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deadrelu.errors import ConfigError
from deadrelu.loading import open_data
from deadrelu.loading.preprocess import center_crop, from_preprocessor_config

Image = pytest.importorskip("PIL.Image")

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _images(folder: Path) -> list[Path]:
    """Three RGB images of different sizes and aspect ratios."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(50, 70), (64, 48), (40, 40)]):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _by_hand(path: Path, short: int, crop: int, resample: int) -> np.ndarray:
    with Image.open(path) as image:
        w, h = image.size
        scale = short / min(w, h)
        image = image.convert("RGB").resize((round(w * scale), round(h * scale)), resample)
        w, h = image.size
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        image = image.crop((left, top, left + crop, top + crop))
        return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _preprocessor(folder: Path, **overrides) -> None:
    config = {"do_resize": True, "size": {"shortest_edge": 36}, "do_center_crop": True,
              "crop_size": {"height": 32, "width": 32}, "do_normalize": True,
              "image_mean": MEAN, "image_std": STD, "resample": 3, **overrides}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))


def test_preprocessor_config_resize_crop_normalise(tmp_path: Path) -> None:
    files = _images(tmp_path / "images")
    _preprocessor(tmp_path)
    transform = from_preprocessor_config(tmp_path)
    assert transform is not None and transform.output_size == (32, 32)
    source = open_data(tmp_path / "images", batch_size=8, transform=transform,
                       normalize=transform.normalize_spec())
    (batch,) = list(source)
    assert batch.shape == (3, 3, 32, 32)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for got, file in zip(batch, files, strict=True):
        expected = (torch.from_numpy(_by_hand(file, 36, 32, 3)) - mean) / std
        torch.testing.assert_close(got, expected)
    assert any("centre-cropped to 32x32 (from preprocessor_config.json)" in n for n in source.notes)


def test_center_crop_is_the_usual_eval_transform(tmp_path: Path) -> None:
    files = _images(tmp_path)
    transform = center_crop((28, 28))
    assert transform.short_side == 32  # 28 / 0.875
    (batch,) = list(open_data(tmp_path, transform=transform))
    for got, file in zip(batch, files, strict=True):
        torch.testing.assert_close(got, torch.from_numpy(_by_hand(file, 32, 28, 2)))


def test_plain_resize_config_and_crop_pct(tmp_path: Path) -> None:
    _preprocessor(tmp_path, size={"height": 30, "width": 20}, do_center_crop=False)
    transform = from_preprocessor_config(tmp_path)
    assert transform is not None and transform.resize == (30, 20) and transform.crop is None
    _preprocessor(tmp_path, size={"shortest_edge": 32}, crop_pct=0.8, do_center_crop=False)
    transform = from_preprocessor_config(tmp_path)
    assert transform is not None and (transform.short_side, transform.crop) == (40, (32, 32))
    assert from_preprocessor_config(tmp_path / "nowhere") is None


def test_image_size_and_a_transform_conflict(tmp_path: Path) -> None:
    _images(tmp_path)
    with pytest.raises(ConfigError, match="both say how to size"):
        open_data(tmp_path, image_size=16, transform=center_crop((16, 16)))


def test_cli_uses_the_directorys_preprocessor_config(cli, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import ResNetConfig, ResNetForImageClassification

    model = ResNetForImageClassification(ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3))
    model.save_pretrained(tmp_path / "resnet")
    _preprocessor(tmp_path / "resnet")
    _images(tmp_path / "images")
    code, out, err = cli("scan", tmp_path / "resnet", "--data", tmp_path / "images",
                         "--format", "json", "--no-progress")
    assert code == 0, err
    report = json.loads(out)
    notes = report["meta"]["notes"]
    assert any("centre-cropped to 32x32 (from preprocessor_config.json)" in n for n in notes)
    assert any(n.startswith("normalized with mean 0.5/0.4/0.3") for n in notes)
    assert report["meta"]["data"].endswith("(RGB, 32x32)")
    # --center-crop overrides the config; --normalize none keeps the pixels in [0, 1]
    code, out, err = cli("scan", tmp_path / "resnet", "--data", tmp_path / "images",
                         "--center-crop", "24", "--normalize", "none", "--format", "json",
                         "--no-progress")
    assert code == 0, err
    report = json.loads(out)
    assert report["meta"]["data"].endswith("(RGB, 24x24)")
    assert not any(n.startswith("normalized") for n in report["meta"]["notes"])
