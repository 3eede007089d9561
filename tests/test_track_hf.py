"""``deadrelu track`` over Hugging Face ``checkpoint-*/`` directories with scan's loading options.

``--tokenizer``, ``--text-column``, ``--max-length``, ``--dtype`` and ``--device-map``
apply to every checkpoint the run loads, and text is tokenized with each checkpoint's
own tokenizer. Token counts are planted: the word-level test tokenizer gives one
token per word and no special tokens, so a cut to N tokens leaves ``min(words, N)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import CliResult  # noqa: E402
from hf_fixtures import TEXTS, save_bert_dir, word_tokenizer  # noqa: E402

SM = Path(__file__).resolve().parents[1] / "sample_models"


def _error(result: CliResult) -> str:
    assert result.code == 2, result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and " — " in lines[0], result.err
    return lines[0]


def _tokens(cut: int | None = None) -> int:
    """Tokens of TEXTS with the word tokenizer, each text cut to ``cut`` tokens."""
    return sum(min(len(t.split()), cut or 10**6) for t in TEXTS)


def _save_tokenizer(folder: Path, model_max_length: int) -> None:
    tok = word_tokenizer()
    tok.model_max_length = model_max_length  # saved in tokenizer_config.json: cuts every text
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Trainer-like output_dir of tiny BERT classifiers: checkpoint-10/ with the usual
    tokenizer, checkpoint-20/ with one that cuts texts to 3 tokens, checkpoint-30/ without one."""
    root = tmp_path_factory.mktemp("bert_run")
    save_bert_dir(root / "checkpoint-10")
    save_bert_dir(root / "checkpoint-20", tokenizer=False)
    _save_tokenizer(root / "checkpoint-20", 3)
    save_bert_dir(root / "checkpoint-30", tokenizer=False)
    (root / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    # two string fields: the text has to be named
    (root / "texts.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "body": t}) + "\n"
                                              for i, t in enumerate(TEXTS)))
    return root


def _track(cli, run: Path, data: Path, *options: object) -> dict:
    result = cli("track", f"{run}/checkpoint-*", "--data", data, "--format", "json",
                 "--no-progress", *options)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_each_checkpoint_tokenizes_with_its_own_tokenizer(cli, bert_run: Path) -> None:
    trend = _track(cli, bert_run, bert_run / "texts.txt")
    assert [c["step"] for c in trend["checkpoints"]] == [10, 20, 30]
    # checkpoint-30 has no tokenizer: it is scanned on checkpoint-20's tokens
    assert [c["tokens"] for c in trend["checkpoints"]] == [_tokens(), _tokens(3), _tokens(3)]
    notes = "\n".join(trend["notes"])
    assert "checkpoint-20's tokenizer differs from checkpoint-10's: its text was tokenized with its own" in notes
    assert "checkpoint-30 has no tokenizer: its text was tokenized with checkpoint-20's" in notes
    table = cli("track", f"{bert_run}/checkpoint-*", "--data", bert_run / "texts.txt",
                "--no-progress")
    assert (f"3 checkpoints, steps 10..30, {len(TEXTS)} samples each, {_tokens(3)} to "
            f"{_tokens()} tokens (see the notes)") in table.out


def test_tokenizer_option_overrides_every_checkpoint(cli, bert_run: Path, tmp_path: Path) -> None:
    _save_tokenizer(tmp_path / "tok", 2)
    trend = _track(cli, bert_run, bert_run / "texts.txt", "--tokenizer", tmp_path / "tok")
    assert [c["tokens"] for c in trend["checkpoints"]] == [_tokens(2)] * 3
    assert not any("tokenizer" in note for note in trend["notes"])


def test_text_column_and_max_length_apply_to_every_checkpoint(cli, bert_run: Path) -> None:
    trend = _track(cli, bert_run, bert_run / "texts.jsonl", "--text-column", "body",
                   "--max-length", "2")
    # --max-length wins over each tokenizer's own limit (checkpoint-20's is 3)
    assert [c["tokens"] for c in trend["checkpoints"]] == [_tokens(2)] * 3
    assert [c["samples"] for c in trend["checkpoints"]] == [len(TEXTS)] * 3
    table = cli("track", f"{bert_run}/checkpoint-*", "--data", bert_run / "texts.jsonl",
                "--text-column", "body", "--max-length", "2", "--no-progress")
    assert f"{len(TEXTS)} samples, {_tokens(2)} tokens each" in table.out


@pytest.fixture
def scanned_dtypes(monkeypatch: pytest.MonkeyPatch) -> list[set[torch.dtype]]:
    """The parameter dtypes of every model the CLI scans, in order."""
    import deadrelu.cli.running as running

    seen: list[set[torch.dtype]] = []
    real = running.run_scan

    def recording(model, data, **kwargs):
        seen.append({p.dtype for p in model.parameters()})
        return real(model, data, **kwargs)

    monkeypatch.setattr(running, "run_scan", recording)
    return seen


def test_dtype_applies_to_every_checkpoint_directory(cli, bert_run: Path, scanned_dtypes) -> None:
    trend = _track(cli, bert_run, bert_run / "texts.txt", "--dtype", "bfloat16",
                   "--device-map", "cpu")
    assert len(trend["checkpoints"]) == 3
    assert scanned_dtypes == [{torch.bfloat16}] * 3


def test_dtype_applies_to_a_series_of_weight_files(cli, scanned_dtypes) -> None:
    result = cli("track", SM / "series", "--arch", f"{SM / 'models.py'}:DigitsMLP",
                 "--data", SM / "data" / "digits_test.npy", "--dtype", "float16",
                 "--no-progress", "-q")
    assert result.code == 0, result.err
    assert len(scanned_dtypes) == len(list((SM / "series").glob("*.pt"))) > 0
    assert all(dtypes == {torch.float16} for dtypes in scanned_dtypes)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--dtype", "float8", "--dtype 'float8' is not one of"),
    ("--max-length", "0", "--max-length 0 is not positive"),
    ("--text-column", "title", "no column 'title'"),
    ("--tokenizer", "no/such/tokenizer", "tokenizer directory no/such/tokenizer does not exist"),
    ("--device-map", "everywhere", "--device-map auto, balanced or sequential"),
])
def test_bad_values_are_one_line_errors(cli, bert_run: Path, option: str, value: str,
                                        expected: str) -> None:
    result = cli("track", bert_run / "checkpoint-*", "--data", bert_run / "texts.jsonl",
                 "--text-column", "body", option, value, "--no-progress")
    assert expected in _error(result)
