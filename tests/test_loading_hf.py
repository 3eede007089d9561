"""Hugging Face ``save_pretrained`` directories: every way they are stored, head selection,
whole-model pickles, and a one-line error for each way they go wrong."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from hf_fixtures import save_bert_dir, tiny_bert  # noqa: E402

from deadrelu.errors import CheckpointError, ConfigError  # noqa: E402
from deadrelu.loading import load_model  # noqa: E402


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def test_single_safetensors_directory(tmp_path: Path) -> None:
    original = save_bert_dir(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.format == "transformers"
    assert type(loaded.model).__name__ == "BertForSequenceClassification"  # config's architectures
    assert "model.safetensors" in loaded.description
    assert loaded.notes == ()
    _same_weights(loaded.model, original)


def test_config_json_names_its_directory(tmp_path: Path) -> None:
    original = save_bert_dir(tmp_path)
    _same_weights(load_model(tmp_path / "config.json").model, original)


def test_sharded_safetensors_with_index(tmp_path: Path) -> None:
    original = save_bert_dir(tmp_path, max_shard_size="20KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    loaded = load_model(tmp_path)
    assert "sharded" in loaded.description
    _same_weights(loaded.model, original)
    # the index itself names the directory too
    _same_weights(load_model(tmp_path / "model.safetensors.index.json").model, original)


def test_pytorch_model_bin(tmp_path: Path) -> None:
    original = tiny_bert()
    original.config.save_pretrained(tmp_path)  # a bare config names no architecture
    torch.save(original.state_dict(), tmp_path / "pytorch_model.bin")
    base = load_model(tmp_path)
    assert type(base.model).__name__ == "BertModel"
    assert any("names no architecture" in n for n in base.notes)
    original.config.architectures = ["BertForSequenceClassification"]
    original.config.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert "pytorch_model.bin" in loaded.description
    _same_weights(loaded.model, original)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_BIN",))


def test_pytorch_model_bin_goes_through_the_allowlist(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_bert().config.save_pretrained(tmp_path)
    with (tmp_path / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Evil()}, f)
    with pytest.raises(CheckpointError, match=r"(posix|os)\.system"):
        load_model(tmp_path)
    assert not (tmp_path / "PWNED_BY_BIN").exists()


def test_pytorch_model_bin_must_be_a_state_dict(tmp_path: Path) -> None:
    model = tiny_bert()
    model.config.save_pretrained(tmp_path)
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="holds more than a state dict"):
        load_model(tmp_path)


def test_arch_selects_the_head(tmp_path: Path) -> None:
    save_bert_dir(tmp_path)
    base = load_model(tmp_path, arch="transformers:AutoModel")
    assert type(base.model).__name__ == "BertModel"
    assert any("not used by this class" in n for n in base.notes)  # the classifier head
    head = load_model(tmp_path, arch="AutoModelForSequenceClassification")
    assert type(head.model).__name__ == "BertForSequenceClassification"
    masked = load_model(tmp_path, arch="transformers:BertForMaskedLM")
    # the checkpoint has no MLM head: the report must say those weights are random
    assert any("initialised at random" in n and "cls.predictions" in n for n in masked.notes)


def test_dtype(tmp_path: Path) -> None:
    save_bert_dir(tmp_path)
    loaded = load_model(tmp_path, dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    with pytest.raises(ConfigError, match="--dtype 'float8'"):
        load_model(tmp_path, dtype="float8")


def test_whole_pickled_transformers_model_points_at_save_pretrained(tmp_path: Path) -> None:
    torch.save(tiny_bert(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "model.pt")
    message = str(info.value)
    assert "BertForSequenceClassification" in message and "save_pretrained" in message
    assert "\n" not in message
    # trusted, it loads as any whole-model pickle
    with pytest.warns(UserWarning, match="trust-checkpoint"):
        loaded = load_model(tmp_path / "model.pt", trust_checkpoint=True)
    assert type(loaded.model).__name__ == "BertForSequenceClassification"


# -- one-line errors ---------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and " — " in text
    return text


def test_directory_without_config(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    text = _one_line(info)
    assert "is a directory without config.json" in text and "weights.pt" in text


def test_config_without_weights(tmp_path: Path) -> None:
    tiny_bert().config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    assert "no weights" in _one_line(info)


def test_unknown_model_type(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_model"}))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    assert "'no_such_model'" in _one_line(info)


def test_unknown_architecture(tmp_path: Path) -> None:
    save_bert_dir(tmp_path, tokenizer=False)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["BertForTimeTravel"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    assert "BertForTimeTravel" in _one_line(info)
    with pytest.raises(ConfigError) as arch_info:
        load_model(tmp_path, arch="transformers:NoSuchModel")
    assert "NoSuchModel" in _one_line(arch_info)


def test_remote_code_is_refused_without_trust(tmp_path: Path) -> None:
    marker = tmp_path / "RAN"
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "custom_thing", "architectures": ["CustomModel"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModel": "modeling_custom.CustomModel"},
    }))
    (tmp_path / "configuration_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    text = _one_line(info)
    assert "custom code" in text and "--trust-checkpoint" in text
    assert not marker.exists()
