"""Audio folders: read, mixed to mono, resampled to the feature extractor's rate, batched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deadrelu.errors import DataError
from deadrelu.loading import open_data

sf = pytest.importorskip("soundfile")


def _write(folder: Path, rate: int = 8000) -> list[np.ndarray]:
    """Three clips (one stereo, one .flac) of different lengths; returns their mono waves."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(rate) / rate
    waves = [0.5 * np.sin(2 * np.pi * 440 * t[:800]), 0.3 * np.sin(2 * np.pi * 220 * t[:1200]),
             0.2 * np.sin(2 * np.pi * 330 * t[:600])]
    sf.write(folder / "a.wav", waves[0].astype(np.float32), rate, subtype="FLOAT")
    stereo = np.stack([waves[1], waves[1]], axis=1).astype(np.float32)
    sf.write(folder / "b.wav", stereo, rate, subtype="FLOAT")
    sf.write(folder / "c.flac", waves[2].astype(np.float32), rate, subtype="PCM_24")
    return waves


def test_waveforms_without_a_feature_extractor(tmp_path: Path) -> None:
    waves = _write(tmp_path)
    source = open_data(tmp_path, batch_size=8)
    (batch,) = list(source)
    assert batch.shape == (3, 1, 1200)
    for row, wave in zip(batch, waves, strict=True):
        np.testing.assert_allclose(row[0, : len(wave)].numpy(), wave, atol=1e-6)
        assert not row[0, len(wave):].any()
    assert source.description == f"3 audio files from {tmp_path} (8,000 Hz)"


def test_resampled_to_the_feature_extractors_rate(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    scipy_signal = pytest.importorskip("scipy.signal")
    waves = _write(tmp_path / "clips")
    extractor = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
        return_attention_mask=True)
    source = open_data(tmp_path / "clips", batch_size=2, feature_extractor=extractor)
    first, second = list(source)
    assert set(first) == {"input_values", "attention_mask"}
    expected = [scipy_signal.resample_poly(w, 2, 1) for w in waves]
    assert first["input_values"].shape == (2, len(expected[1]))
    np.testing.assert_allclose(first["input_values"][0, : len(expected[0])].numpy(), expected[0],
                               atol=1e-5)
    assert int(first["attention_mask"][0].sum()) == len(expected[0])
    np.testing.assert_allclose(second["input_values"][0].numpy(), expected[2], atol=1e-4)
    assert any("resampled to 16,000 Hz" in n for n in source.notes)


def test_mixed_rates_without_an_extractor_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path, rate=8000)
    sf.write(tmp_path / "d.wav", np.zeros(100, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="different sampling rates"):
        open_data(tmp_path)


def test_cli_audio_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transformers = pytest.importorskip("transformers")
    from deadrelu.cli import main

    config = transformers.Wav2Vec2Config(
        vocab_size=12, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, hidden_act="relu",
        feat_extract_activation="relu", do_stable_layer_norm=False)
    transformers.Wav2Vec2ForCTC(config).save_pretrained(tmp_path / "w2v")
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False
                                          ).save_pretrained(tmp_path / "w2v")
    _write(tmp_path / "clips")
    code = 0
    try:
        main(["scan", str(tmp_path / "w2v"), "--data", str(tmp_path / "clips"), "--format", "json",
              "--no-progress"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["summary"]["samples"] == 3
    assert "tokens" not in report["meta"]
    assert any("features from Wav2Vec2FeatureExtractor" in n for n in report["meta"]["notes"])
    assert torch.tensor([layer["units"] for layer in report["layers"]]).gt(0).all()
