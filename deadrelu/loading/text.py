"""Text data for language models: lines, JSON records or table columns, tokenized per batch.

``--data`` names a ``.txt`` file (one example per line; blank lines skipped), a
``.jsonl``/``.json`` file of records, a ``.csv``/``.parquet`` table, or a directory
written by ``datasets``' ``save_to_disk`` (read with pyarrow; a DatasetDict offers its
test, else validation split); records, tables and datasets give their text in
``--text-column`` (default: the only string column).
Texts are read in batches of ``batch_size``, and each batch is tokenized in one
call (a fast tokenizer works on the whole list at once) and padded to its own
longest sequence. Each batch is a dict of ``input_ids``, ``attention_mask`` (and
whatever else the tokenizer returns) for ``model(**batch)``; the collector reads
the ``attention_mask`` so that padding counts as no position at all.

Nothing is tokenized before iteration starts; opening a file reads it once to
count its examples (for the progress bar and the header).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from deadrelu.errors import ConfigError, DataError
from deadrelu.loading.imports import one_line
from deadrelu.loading.source import Batch, DataSource

#: Files that are always text (a table is text only when a tokenizer is at hand).
TEXT_SUFFIXES = (".txt", ".jsonl", ".json")
TABLE_TEXT_SUFFIXES = (".csv", ".parquet", ".tsv")
#: Tokenizer files that make a directory a tokenizer directory.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model",
                   "tokenizer.model", "vocab.json")
#: Above this, a tokenizer's model_max_length is its "no limit" placeholder.
_NO_LIMIT = 1_000_000


def load_tokenizer(path: str | Path, *, trust_checkpoint: bool = False) -> Any:
    """The tokenizer saved in directory ``path`` (``AutoTokenizer``, local files only).

    Raises:
        DataError: the directory holds no tokenizer, or it cannot be loaded.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"tokenizer directory {folder} does not exist",
                        "pass --tokenizer DIR, a directory written by tokenizer.save_pretrained")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(
            f"{folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...), so text "
            "data cannot be turned into token ids",
            "pass --tokenizer DIR (a directory written by tokenizer.save_pretrained), or save the "
            "tokenizer beside the model",
        )
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise DataError("text data needs the transformers package to tokenize it",
                        "pip install 'deadrelu[transformers]'") from exc
    from deadrelu.loading.hf import _quiet_transformers

    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                 trust_remote_code=trust_checkpoint)
    except Exception as exc:
        raise DataError(f"the tokenizer in {folder} cannot be loaded: {type(exc).__name__}: "
                        f"{one_line(exc)}",
                        "re-save it with tokenizer.save_pretrained, or pass --tokenizer DIR") from exc


#: Files whose content decides how a tokenizer splits text (compared across checkpoints).
_TOKENIZER_CONTENT = (*TOKENIZER_FILES, "merges.txt", "special_tokens_map.json", "added_tokens.json")


def tokenizer_fingerprint(path: str | Path) -> str | None:
    """A digest of the tokenizer saved in directory ``path`` (``None``: it holds none).

    Two directories with the same digest tokenize text alike, so ``track`` opens the
    data again only for a checkpoint whose tokenizer changed. ``name_or_path``, which
    some transformers versions write into ``tokenizer_config.json``, names the folder,
    not the tokenizer, and is left out.
    """
    import hashlib

    folder = Path(path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    digest = hashlib.sha256()
    for name in _TOKENIZER_CONTENT:
        file = folder / name
        if not file.is_file():
            continue
        content = file.read_bytes()
        if name.endswith(".json"):
            try:
                parsed = json.loads(content)
            except ValueError:
                pass
            else:
                if isinstance(parsed, dict):
                    parsed.pop("name_or_path", None)
                content = json.dumps(parsed, sort_keys=True).encode()
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory written by ``datasets``' ``save_to_disk``."""
    return path.is_dir() and any((path / name).is_file()
                                 for name in ("state.json", "dataset_dict.json"))


def is_text_file(path: Path, *, tokenizer_known: bool, text_column: str | None) -> bool:
    """Whether ``--data`` is text: ``.txt``/``.jsonl``/``.json`` always; tables and saved
    ``datasets`` directories when the model came with a tokenizer (or ``--text-column``
    is given) and have a string column."""
    if is_saved_dataset(path):
        return text_column is not None or bool(_string_columns(path))
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return True
    if suffix not in TABLE_TEXT_SUFFIXES or not path.is_file():
        return False
    if text_column is not None:
        return True
    return tokenizer_known and bool(_string_columns(path))


def open_text(
    path: str | Path,
    tokenizer: Any,
    *,
    batch_size: int,
    limit: int | None = None,
    text_column: str | None = None,
    max_length: int | None = None,
    model_max_length: int | None = None,
) -> DataSource:
    """Open a text file as batches of tokenized, per-batch padded sequences.

    Args:
        path: a ``.txt``, ``.jsonl``, ``.json``, ``.csv``/``.tsv`` or ``.parquet`` file.
        tokenizer: a ``transformers`` tokenizer (see :func:`load_tokenizer`).
        batch_size: sequences per batch (and per tokenizer call).
        limit: read at most this many examples.
        text_column: the field or column holding the text (default: the only string one).
        max_length: cut sequences to this many tokens (default: what the model takes).
        model_max_length: the model's own limit (``max_position_embeddings``), if known.

    Raises:
        DataError: unreadable file, no texts, or no such / no obvious text column.
        ConfigError: a non-positive ``max_length``.
    """
    path = Path(path)
    if not path.is_file() and not is_saved_dataset(path):
        raise DataError(f"text file {path} does not exist", "check --data")
    if max_length is not None and max_length < 1:
        raise ConfigError(f"--max-length {max_length} is not positive", "pass e.g. --max-length 512")
    notes: list[str] = []
    reader, column = _reader(path, text_column)
    count = sum(1 for _ in reader())
    if count == 0:
        raise DataError(f"{path} holds no text (every example is empty)",
                        "point --data at a file with one example per line or record")
    if is_saved_dataset(path) and _dataset_split(path) != path:
        notes.append(f"split {_dataset_split(path).name!r} of the saved DatasetDict")
    if column is not None:
        notes.append(f"text from column {column!r}")
    length = _max_length(tokenizer, max_length, model_max_length)
    if getattr(tokenizer, "pad_token", None) is None:
        fill = getattr(tokenizer, "eos_token", None) or getattr(tokenizer, "unk_token", None)
        if fill is None:
            raise DataError(f"the tokenizer has no padding token, so batches of {path} cannot "
                            "be padded", "pass --batch-size 1, or add a pad token to the tokenizer")
        tokenizer.pad_token = fill  # on the in-memory copy only; its files are untouched
        notes.append(f"the tokenizer has no pad token: padded with {fill!r} (padding is not counted)")
    notes.append(f"sequences longer than {length:,} tokens are cut to {length:,}")

    def batches() -> Iterator[Batch]:
        chunk: list[str] = []
        for text in _limited(reader(), limit):
            chunk.append(text)
            if len(chunk) == batch_size:
                yield _tokenize(tokenizer, chunk, length, path)
                chunk = []
        if chunk:
            yield _tokenize(tokenizer, chunk, length, path)

    shown = min(count, limit) if limit is not None else count
    return DataSource(batches, description=f"{shown:,} sequences from {path}",
                      num_samples=shown, sample_shape=None, notes=notes)


def _limited(texts: Iterator[str], limit: int | None) -> Iterator[str]:
    for index, text in enumerate(texts):
        if limit is not None and index >= limit:
            return
        yield text


def _tokenize(tokenizer: Any, texts: list[str], length: int, path: Path) -> Batch:
    try:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=length,
                            return_tensors="pt")
    except Exception as exc:
        raise DataError(f"tokenizing {path} raised {type(exc).__name__}: {one_line(exc)}",
                        "check that the tokenizer belongs to the model") from exc
    return {key: value for key, value in encoded.items()}


def _max_length(tokenizer: Any, given: int | None, model_limit: int | None) -> int:
    if given is not None:
        return given
    limits = [v for v in (getattr(tokenizer, "model_max_length", None), model_limit)
              if isinstance(v, int) and 0 < v < _NO_LIMIT]
    return min(limits) if limits else 512


# -- readers: each returns a factory of text iterators, and the column it reads ------------


def _reader(path: Path, column: str | None) -> tuple[Any, str | None]:
    if is_saved_dataset(path):
        folder = _dataset_split(path)
        name = _pick_column(folder, _string_columns(folder), column, _columns(folder))
        return (lambda: _arrow_texts(folder, name)), name
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if column is not None:
            raise ConfigError(f"--text-column {column!r} does not apply to {path}: a .txt file "
                              "has one example per line", "leave --text-column out")
        return (lambda: _lines(path)), None
    if suffix in (".jsonl", ".json"):
        records = _json_records(path)
        name = _pick_column(path, _record_string_keys(records), column, list(_all_keys(records)))
        return (lambda: (str(r[name]) for r in records
                         if isinstance(r, dict) and isinstance(r.get(name), str) and r[name].strip())), name
    names = _string_columns(path)
    all_names = _columns(path)
    name = _pick_column(path, names, column, all_names)
    return (lambda: _table_texts(path, name)), name


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as stream:
            for line in stream:
                text = line.rstrip("\r\n")
                if text.strip():
                    yield text
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read as UTF-8 text ({one_line(exc)})",
                        "save it as UTF-8, one example per line") from exc


def _json_records(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({one_line(exc)})",
                        "write one JSON object per line (.jsonl) or a list of objects (.json)") from exc
    if isinstance(data, dict):  # {"data": [...]} or {"text": [...], "label": [...]}
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
            return next(iter(lists.values()))
        if lists and len({len(v) for v in lists.values()}) == 1:
            keys = list(lists)
            return [dict(zip(keys, row, strict=True)) for row in zip(*lists.values(), strict=True)]
    if isinstance(data, list):
        if all(isinstance(r, str) for r in data):
            return [{"text": r} for r in data]
        return data
    raise DataError(f"{path} holds a JSON {type(data).__name__}, not a list of records",
                    "write a list of objects, e.g. [{\"text\": \"...\"}, ...]")


def _all_keys(records: Sequence[Any]) -> dict[str, None]:
    keys: dict[str, None] = {}
    for record in records[:100]:
        if isinstance(record, dict):
            keys.update(dict.fromkeys(str(k) for k in record))
    return keys


def _record_string_keys(records: Sequence[Any]) -> list[str]:
    sample = [r for r in records[:100] if isinstance(r, dict)]
    return [k for k in _all_keys(records)
            if any(isinstance(r.get(k), str) for r in sample)
            and all(isinstance(r.get(k), str) or r.get(k) is None for r in sample)]


def _pick_column(path: Path, strings: list[str], given: str | None, all_names: list[str]) -> str:
    if given is not None:
        if given not in all_names:
            shown = ", ".join(all_names[:8]) or "none"
            raise DataError(f"{path} has no column {given!r} (it has {shown})",
                            "pass --text-column with one of those names")
        return given
    if len(strings) == 1:
        return strings[0]
    if not strings:
        raise DataError(f"{path} has no text column (columns: {', '.join(all_names[:8]) or 'none'})",
                        "pass --text-column NAME, or give the text as strings")
    raise DataError(f"{path} has several text columns ({', '.join(strings[:8])})",
                    f"pass --text-column to pick one, e.g. --text-column {strings[0]}")


def _columns(path: Path) -> list[str]:
    if is_saved_dataset(path):
        return [str(n) for n in _arrow_schema(_dataset_split(path)).names]
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return [str(n) for n in pq.read_schema(path).names]
    return [str(c) for c in _read_csv(path, nrows=0).columns]


def _string_columns(path: Path) -> list[str]:
    """Columns of a table that hold text (strings)."""
    try:
        if is_saved_dataset(path) or path.suffix.lower() == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = (_arrow_schema(_dataset_split(path)) if path.is_dir()
                      else pq.read_schema(path))
            return [f.name for f in schema
                    if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        head = _read_csv(path, nrows=200)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path} cannot be read as a table ({one_line(exc)})",
                        "check the file") from exc
    return [str(c) for c in head.columns if head[c].dtype == object or str(head[c].dtype) == "str"
            or str(head[c].dtype).startswith("string")]


def _read_csv(path: Path, **kwargs: Any) -> Any:
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        return pd.read_csv(path, sep=sep, **kwargs)
    except Exception as exc:
        raise DataError(f"{path} cannot be read as a table ({one_line(exc)})", "check the file") from exc


def _table_texts(path: Path, column: str) -> Iterator[str]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=[column], batch_size=4096):
            for value in batch.column(0).to_pylist():
                if isinstance(value, str) and value.strip():
                    yield value
        return
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    import pandas as pd

    for chunk in pd.read_csv(path, sep=sep, usecols=[column], chunksize=4096):
        for value in chunk[column].tolist():
            if isinstance(value, str) and value.strip():
                yield value


# -- datasets' save_to_disk directories, read with pyarrow alone ---------------------------
# A Dataset directory holds state.json (listing its Arrow IPC *stream* files) and
# dataset_info.json; a DatasetDict directory holds dataset_dict.json and one such
# directory per split. Reading them needs no `datasets` package.

_SPLIT_PREFERENCE = ("test", "validation", "valid", "eval", "dev")


def _dataset_split(path: Path) -> Path:
    """The Dataset directory to read: ``path`` itself, or the split a DatasetDict offers
    for evaluation (test, then validation...), or its only split."""
    if (path / "state.json").is_file():
        return path
    try:
        splits = [str(s) for s in json.loads((path / "dataset_dict.json").read_text())["splits"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path / 'dataset_dict.json'} cannot be read ({one_line(exc)})",
                        "re-save the dataset with save_to_disk") from exc
    chosen = next((s for s in _SPLIT_PREFERENCE if s in splits), None)
    if chosen is None and len(splits) == 1:
        chosen = splits[0]
    if chosen is None:
        raise DataError(f"{path} is a DatasetDict with splits {', '.join(splits)}",
                        f"point --data at one split, e.g. --data {path / splits[0]}")
    return path / chosen


def _arrow_files(folder: Path) -> list[Path]:
    try:
        state = json.loads((folder / "state.json").read_text())
        files = [folder / str(f["filename"]) for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{folder / 'state.json'} cannot be read ({one_line(exc)})",
                        "re-save the dataset with save_to_disk") from exc
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"the dataset in {folder} lists data files that are missing",
                        "re-save the dataset with save_to_disk")
    return files


def _arrow_schema(folder: Path) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(_arrow_files(folder)[0])) as source:
        return pa.ipc.open_stream(source).schema


def _arrow_texts(folder: Path, column: str) -> Iterator[str]:
    import pyarrow as pa

    for file in _arrow_files(folder):
        with pa.memory_map(str(file)) as source:
            for batch in pa.ipc.open_stream(source):
                for value in batch.column(column).to_pylist():
                    if isinstance(value, str) and value.strip():
                        yield value
