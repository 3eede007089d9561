"""Stream the numeric columns of CSV and Parquet tables as float32 batches.

Tables are never read whole: CSV goes through pandas' ``chunksize`` reader and
Parquet through pyarrow's record-batch iterator, one batch at a time. The
feature columns are fixed when the table is opened (numeric columns, minus
``target``), so every batch has the same width and order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import DataError
from deadrelu.loading.extras import require
from deadrelu.loading.imports import one_line
from deadrelu.loading.source import DataSource

if TYPE_CHECKING:
    import pandas as pd
    import torch

TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".parquet", ".pq"})
_CSV_PEEK_ROWS = 1000  # rows read up front to decide which columns are numeric


@dataclass
class _Table:
    path: Path
    columns: list[str]  # every column, in file order
    num_rows: int | None


def open_tables(
    root: Path, files: list[Path], *, batch_size: int, limit: int | None, target: str | None
) -> DataSource:
    """A :class:`DataSource` over one table file or a folder of them (same columns).

    Raises:
        DataError: unreadable file, unknown ``target``, no numeric column, or
            a non-numeric value inside a numeric column.
    """
    first = _inspect(files[0])
    if target is not None and target not in first.columns:
        raise DataError(
            f"target column {target!r} is not in {files[0]} (columns: {_list(first.columns)})",
            "pass --target with one of those columns, or leave it out",
        )
    numeric = _numeric_columns(files[0], first.columns)
    features = [c for c in numeric if c != target]
    dropped = [c for c in first.columns if c not in numeric and c != target]
    if not features:
        raise DataError(
            f"{files[0]} has no numeric feature columns (columns: {_list(first.columns)})",
            "encode the features as numbers, or check --target",
        )
    notes = [f"dropped non-numeric columns: {_list(dropped)}"] if dropped else []
    if target is not None:
        notes.append(f"dropped target column {target!r}")
    tables = [first] + [_inspect(f) for f in files[1:]]
    for table in tables[1:]:
        missing = [c for c in features if c not in table.columns]
        if missing:
            raise DataError(
                f"{table.path} lacks columns {_list(missing)} that {files[0]} has",
                "put only tables with the same columns in the --data folder",
            )
    counts = [t.num_rows for t in tables]
    total = None if None in counts else sum(c for c in counts if c is not None)
    if total is not None and limit is not None:
        total = min(total, limit)

    def batches() -> Iterator[torch.Tensor]:
        for table in tables:
            yield from _read(table, features, batch_size=batch_size, limit=limit)

    columns = f"{len(features)} numeric columns"
    if total is not None:
        what = f"{len(files)} tables in {root}" if root.is_dir() else root.name
        description = f"{total:,} rows x {columns} from {what}"
    # CSV row counts are unknown until the file has been read through: the
    # count is left out rather than shown as a bare "rows".
    elif root.is_dir():
        description = f"{len(files)} tables with {columns} in {root}"
    else:
        description = f"a table with {columns} from {root.name}"
    return DataSource(
        batches,
        description=description,
        num_samples=total,
        sample_shape=(len(features),),
        notes=notes,
    )


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _inspect(path: Path) -> _Table:
    if _is_parquet(path):
        pq = _pyarrow_parquet(path)
        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:
            raise _unreadable(path, exc) from exc
        return _Table(path, list(meta.schema_arrow.names), int(meta.metadata.num_rows))
    head = _csv_head(path, nrows=0)
    return _Table(path, [str(c) for c in head.columns], None)


def _numeric_columns(path: Path, columns: list[str]) -> list[str]:
    if _is_parquet(path):
        import pyarrow as pa

        schema = _pyarrow_parquet(path).ParquetFile(path).schema_arrow
        return [
            field.name
            for field in schema
            if pa.types.is_integer(field.type)
            or pa.types.is_floating(field.type)
            or pa.types.is_boolean(field.type)
            or pa.types.is_decimal(field.type)
        ]
    import pandas as pd

    head = _csv_head(path, nrows=_CSV_PEEK_ROWS)
    if head.empty:
        raise DataError(f"{path} has a header but no rows", "point --data at a table with data")
    return [str(c) for c in head.columns if pd.api.types.is_numeric_dtype(head[c])]


def _read(
    table: _Table, features: list[str], *, batch_size: int, limit: int | None
) -> Iterator[torch.Tensor]:
    row = 0
    if _is_parquet(table.path):
        parquet = _pyarrow_parquet(table.path).ParquetFile(table.path)
        records = parquet.iter_batches(batch_size, columns=features)
        for record in _guarded(records, table.path):
            yield _to_tensor(record.to_pandas()[features], table.path, first_row=row)
            row += record.num_rows
        return
    with _csv_call(table.path, usecols=features, chunksize=batch_size, nrows=limit) as reader:
        for frame in _guarded(reader, table.path):
            yield _to_tensor(frame[features], table.path, first_row=row)
            row += len(frame)


def _guarded(chunks: Any, path: Path) -> Iterator[Any]:
    """Iterate a reader, turning its parse errors (raised lazily, mid-file) into DataError."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _unreadable(path, exc) from exc
        yield chunk


def _to_tensor(frame: pd.DataFrame, path: Path, *, first_row: int) -> torch.Tensor:
    import numpy as np
    import pandas as pd
    import torch

    try:
        values = frame.to_numpy(dtype=np.float32, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        # Name the column and value: "could not convert string to float" alone
        # does not say where to look.
        for column in frame.columns:
            coerced = pd.to_numeric(frame[column], errors="coerce")
            bad = coerced.isna() & frame[column].notna()
            if bad.any():
                index = int(np.argmax(bad.to_numpy()))
                raise DataError(
                    f"column {column!r} of {path} has a non-numeric value "
                    f"{frame[column].iloc[index]!r} in data row {first_row + index + 1}",
                    "clean that column, or drop it from the table",
                ) from exc
        raise _unreadable(path, exc) from exc
    # Arrow-backed frames (Parquet) can hand back a read-only view, which
    # torch.from_numpy warns about; copy only then, CSV arrays are already ours.
    return torch.from_numpy(values if values.flags.writeable else values.copy())


def _csv_head(path: Path, *, nrows: int) -> pd.DataFrame:
    frame: pd.DataFrame = _csv_call(path, nrows=nrows)
    return frame


def _csv_call(path: Path, **kwargs: Any) -> Any:
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        return pd.read_csv(path, sep=sep, **kwargs)
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{path} is empty (no header row)", "point --data at a table with data"
        ) from exc
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _pyarrow_parquet(path: Path) -> Any:
    return require("pyarrow.parquet", "parquet", f"reading {path} needs pyarrow, which is not installed")


def _unreadable(path: Path, exc: BaseException) -> DataError:
    return DataError(
        f"table {path} cannot be read ({type(exc).__name__}: {one_line(exc)})",
        "check that it is a complete, valid file of the kind its extension says",
    )


def _list(names: list[str]) -> str:
    shown = ", ".join(names[:12])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
