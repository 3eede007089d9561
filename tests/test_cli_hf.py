"""``deadrelu scan``/``check`` on Hugging Face model directories and text data, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import CliResult  # noqa: E402
from hf_fixtures import TEXTS, save_bert_dir, tiny_bert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
LM = SM / "tiny_lm"
LM_TEXT = SM / "data" / "tiny_lm_text.txt"
LM_METRICS = json.loads((SM / "tiny_lm_metrics.json").read_text())


@pytest.fixture
def cli_columns() -> int:
    return 200  # long model-directory paths in the asserted lines


def _error(result: CliResult) -> str:
    assert result.code == 2, result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], result.err
    return lines[0]


def test_sample_language_model_matches_brute_force(cli) -> None:
    result = cli("scan", LM, "--data", LM_TEXT, "--format", "json", "--no-progress")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    dead = {layer["name"]: [layer["dead"], layer["units"]] for layer in report["layers"]}
    assert dead == LM_METRICS["dead_held_out"]
    assert report["meta"]["tokens"] == LM_METRICS["held_out_tokens"]
    assert report["summary"]["samples"] == LM_METRICS["held_out_sentences"]
    for layer in report["layers"]:
        assert layer["counters"]["positions"] == LM_METRICS["held_out_tokens"]


def test_sample_language_model_table_header(cli) -> None:
    result = cli("scan", LM / "config.json", "--data", LM_TEXT, "--no-progress")
    assert result.code == 0, result.err
    tokens = LM_METRICS["held_out_tokens"]
    assert f"400 sequences, {tokens:,} tokens" in result.out
    assert "OPTForCausalLM from tiny_lm/" in result.out


def test_check_gates_a_model_directory(cli) -> None:
    result = cli("check", LM, "--data", LM_TEXT, "--max-dead", "1%", "--no-progress")
    assert result.code == 1, result.out + result.err  # 2.6% of the units are dead
    result = cli("check", LM, "--data", LM_TEXT, "--max-dead", "5%", "--no-progress")
    assert result.code == 0, result.out + result.err


def test_bert_directory_with_a_csv_text_column_and_head_choice(cli, tmp_path: Path) -> None:
    import pandas as pd

    save_bert_dir(tmp_path / "bert")
    pd.DataFrame({"label": range(len(TEXTS)), "sentence": TEXTS}).to_csv(tmp_path / "d.csv", index=False)
    result = cli("scan", tmp_path / "bert", "--data", tmp_path / "d.csv", "--format", "json",
                 "--arch", "transformers:BertModel", "--max-length", "4", "--no-progress")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["meta"]["model"].startswith("BertModel from bert/")
    assert "text from column 'sentence'" in report["meta"]["notes"]
    # cut to 4 tokens: every sequence contributes min(len, 4) real tokens
    assert report["meta"]["tokens"] == sum(min(len(t.split()), 4) for t in TEXTS)


def test_tokenizer_option_points_elsewhere(cli, tmp_path: Path) -> None:
    save_bert_dir(tmp_path / "model", tokenizer=False)
    save_bert_dir(tmp_path / "tok")
    (tmp_path / "t.txt").write_text("\n".join(TEXTS))
    line = _error(cli("scan", tmp_path / "model", "--data", tmp_path / "t.txt"))
    assert "has no tokenizer" in line and "--tokenizer" in line
    result = cli("scan", tmp_path / "model", "--data", tmp_path / "t.txt", "--tokenizer",
                 tmp_path / "tok", "--format", "json", "--no-progress")
    assert result.code == 0, result.err
    assert json.loads(result.out)["meta"]["tokens"] == sum(len(t.split()) for t in TEXTS)


def test_text_column_missing(cli, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS))
    line = _error(cli("scan", LM, "--data", tmp_path / "d.jsonl", "--text-column", "text"))
    assert "no column 'text'" in line and "body" in line


def test_directory_without_config(cli, tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "weights.pt")
    line = _error(cli("scan", tmp_path, "--data", LM_TEXT))
    assert "is a directory without config.json" in line


def test_unknown_architecture(cli) -> None:
    line = _error(cli("scan", LM, "--data", LM_TEXT, "--arch", "transformers:OPTForTimeTravel"))
    assert "OPTForTimeTravel" in line


def test_remote_code_required(cli, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "mine", "auto_map": {"AutoModel": "modeling_mine.Mine"}}))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    line = _error(cli("scan", tmp_path, "--data", LM_TEXT))
    assert "custom code" in line and "--trust-checkpoint" in line


def test_whole_pickled_transformers_model(cli, tmp_path: Path) -> None:
    torch.save(tiny_bert(), tmp_path / "bert.pt")
    line = _error(cli("scan", tmp_path / "bert.pt", "--data", LM_TEXT))
    assert "save_pretrained" in line


def test_text_for_a_model_without_tokenizer(cli) -> None:
    line = _error(cli("scan", SM / "mlp_healthy.pt", "--arch", f"{SM}/models.py:DigitsMLP",
                      "--data", LM_TEXT))
    assert "needs a tokenizer" in line


def test_weights_file_inside_a_directory_points_at_the_directory(cli) -> None:
    line = _error(cli("scan", LM / "model.safetensors", "--data", LM_TEXT))
    assert f"pass its directory {LM}" in line
