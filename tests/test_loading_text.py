"""Text data: each format gives the same tokenized, per-batch padded batches; columns are
found or named; a one-line error when the text column or the tokenizer is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from hf_fixtures import TEXTS, word_tokenizer  # noqa: E402

from deadrelu.errors import DataError  # noqa: E402
from deadrelu.loading import open_data  # noqa: E402


def _write(path: Path, fmt: str, column: str = "text") -> Path:
    labels = list(range(len(TEXTS)))
    if fmt == "txt":
        path.write_text("\n".join(TEXTS[:2]) + "\n\n   \n" + "\n".join(TEXTS[2:]) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({column: t, "label": y}) + "\n"
                                for t, y in zip(TEXTS, labels, strict=True)))
    elif fmt == "json":
        path.write_text(json.dumps([{column: t, "label": y} for t, y in zip(TEXTS, labels, strict=True)]))
    else:
        import pandas as pd

        frame = pd.DataFrame({"label": labels, column: TEXTS})
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path)
    return path


def _expected(batch_size: int) -> list[dict[str, torch.Tensor]]:
    tok = word_tokenizer()
    return [dict(tok(TEXTS[i:i + batch_size], padding=True, truncation=True, max_length=64,
                     return_tensors="pt"))
            for i in range(0, len(TEXTS), batch_size)]


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "json", "csv", "parquet"])
def test_each_format_gives_the_tokenizers_batches(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / f"data.{fmt}", fmt)
    source = open_data(path, batch_size=2, tokenizer=word_tokenizer())
    assert source.num_samples == len(TEXTS)
    assert source.description.startswith("5 sequences")
    got = list(source)
    expected = _expected(2)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert isinstance(g, dict) and g.keys() == e.keys()
        for key in e:
            torch.testing.assert_close(g[key], e[key])
    # padded per batch: each batch is as long as its own longest sequence
    assert got[0]["input_ids"].shape[1] != got[1]["input_ids"].shape[1]
    assert list(source)[0]["input_ids"].equal(got[0]["input_ids"])  # re-iterable


def test_limit_and_max_length(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.txt", "txt")
    source = open_data(path, batch_size=10, limit=3, max_length=4, tokenizer=word_tokenizer())
    (batch,) = list(source)
    assert batch["input_ids"].shape == (3, 4)
    assert source.num_samples == 3


def test_named_text_column_among_several(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "two.csv"
    pd.DataFrame({"title": ["a"] * 5, "body": TEXTS}).to_csv(path, index=False)
    with pytest.raises(DataError, match="several text columns .*--text-column"):
        open_data(path, tokenizer=word_tokenizer())
    source = open_data(path, batch_size=5, tokenizer=word_tokenizer(), text_column="body")
    (batch,) = list(source)
    torch.testing.assert_close(batch["input_ids"], _expected(5)[0]["input_ids"])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_missing_text_column_is_one_line(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path / f"data.{fmt}", fmt, column="sentence")
    with pytest.raises(DataError) as info:
        open_data(path, tokenizer=word_tokenizer(), text_column="text")
    text = str(info.value)
    assert "no column 'text'" in text and "sentence" in text and "\n" not in text


def test_text_without_tokenizer_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.txt", "txt")
    with pytest.raises(DataError) as info:
        open_data(path)
    assert "needs a tokenizer" in str(info.value) and "--tokenizer" in str(info.value)


def test_numeric_table_without_tokenizer_is_still_a_table(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    batch = next(iter(open_data(path)))
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 2)


# -- datasets' save_to_disk directories -----------------------------------------------------
# tests/data/saved_dataset_dict was written by datasets 4.4.1:
#   DatasetDict({"train": d.select([0, 1]), "test": d}).save_to_disk(...), with
#   d = Dataset.from_dict({"label": range(5), "text": TEXTS}); deadrelu reads it with pyarrow.

SAVED = Path(__file__).parent / "data" / "saved_dataset_dict"


def test_saved_dataset_dict_reads_its_test_split() -> None:
    source = open_data(SAVED, batch_size=2, tokenizer=word_tokenizer())
    assert source.num_samples == len(TEXTS)  # the test split: all five
    assert "text from column 'text'" in source.notes
    assert "split 'test' of the saved DatasetDict" in source.notes
    for g, e in zip(list(source), _expected(2), strict=True):
        for key in e:
            torch.testing.assert_close(g[key], e[key])


def test_saved_dataset_split_directory() -> None:
    source = open_data(SAVED / "train", batch_size=8, tokenizer=word_tokenizer())
    (batch,) = list(source)
    torch.testing.assert_close(batch["input_ids"], _expected(2)[0]["input_ids"])


def test_saved_dataset_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no column 'sentence'"):
        open_data(SAVED, tokenizer=word_tokenizer(), text_column="sentence")
