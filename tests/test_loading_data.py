"""open_data: images, tensors, tables and functions stream as batches; bad data fails clearly."""

from __future__ import annotations

import hashlib
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deadrelu.errors import ConfigError, DataError
from deadrelu.loading import DataSource, open_data, parse_image_size, parse_normalize


def digests(root: Path) -> dict[Path, str]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def collect(spec, **kwargs) -> tuple[DataSource, list]:
    """Open and iterate, asserting the data on disk is unchanged afterwards."""
    path = Path(spec)
    before = digests(path) if path.exists() else None
    source = open_data(spec, **kwargs)
    batches = list(source)
    if before is not None:
        assert digests(path) == before
    return source, batches


def data_error(spec, exc_type=DataError, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        list(open_data(spec, **kwargs))
    message = str(info.value)
    assert "\n" not in message and " — " in message, message
    return message


def write_image(path: Path, size=(8, 6), mode="RGB", value=None, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    pixels = (
        rng.integers(0, 256, shape, dtype=np.uint8)
        if value is None
        else np.full(shape, value, np.uint8)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return pixels


@pytest.fixture
def image_dir(tmp_path):
    root = tmp_path / "images"
    pixels = {}
    for cls, count in (("cat", 3), ("dog", 2)):
        for i in range(count):
            path = root / cls / f"{i:02d}.png"
            pixels[path] = write_image(path, seed=hash((cls, i)) % 1000)
    (root / "labels.txt").write_text("not an image\n")
    (root / ".hidden.png").write_bytes(b"garbage")  # hidden files are skipped
    return root, pixels


# --- images ------------------------------------------------------------------------------


def test_image_folder_with_classes(image_dir):
    root, pixels = image_dir
    source, batches = collect(root, batch_size=2)
    assert source.num_samples == 5
    assert source.sample_shape == (3, 6, 8)
    assert "2 class folders" in source.description
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    stacked = torch.cat(batches)
    assert stacked.dtype == torch.float32
    expected = np.stack([pixels[p].transpose(2, 0, 1) / 255.0 for p in sorted(pixels)])
    assert np.allclose(stacked.numpy(), expected, atol=1e-6)  # sorted order, scaled to [0, 1]


def test_image_folder_is_reiterable_and_lazy(image_dir):
    root, _ = image_dir
    (root / "zz" / "broken.png").parent.mkdir()
    (root / "zz" / "broken.png").write_bytes(b"not a png")
    source = open_data(root, batch_size=2, limit=4)  # opening reads only the first image
    assert len(list(source)) == 2 and len(list(source)) == 2
    message = data_error(root, batch_size=2)
    assert "broken.png" in message and "cannot be read" in message


def test_greyscale_and_resize(image_dir):
    root, _ = image_dir
    source, batches = collect(root, channels=1, image_size=4)
    assert source.sample_shape == (1, 4, 4)
    assert batches[0].shape == (5, 1, 4, 4)
    source, batches = collect(root, image_size="5x7")
    assert batches[0].shape[1:] == (3, 5, 7)


def test_image_size_mismatch_suggests_image_size(tmp_path):
    write_image(tmp_path / "a.png", size=(8, 6))
    write_image(tmp_path / "b.png", size=(9, 6))
    message = data_error(tmp_path)
    assert (
        "b.png" in message and "6x9" in message and "6x8" in message and "--image-size" in message
    )
    _, batches = collect(tmp_path, image_size=(6, 8))
    assert batches[0].shape == (2, 3, 6, 8)


def test_single_image_and_greyscale_to_rgb(tmp_path):
    path = tmp_path / "one.jpg"
    write_image(path, mode="L", value=255)
    source, batches = collect(path)
    assert source.num_samples == 1 and batches[0].shape == (1, 3, 6, 8)
    assert torch.allclose(batches[0], torch.ones(1, 3, 6, 8))


def test_unreadable_single_image(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG broken")
    assert "bad.png" in data_error(path)


def test_pillow_missing(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert "deadrelu[images]" in data_error(tmp_path)


def test_missing_extras_name_their_pip_command(tmp_path, monkeypatch):
    import pandas as pd
    from safetensors.torch import save_file

    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet")
    save_file({"x": torch.zeros(2, 3)}, str(tmp_path / "x.safetensors"))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert "needs pyarrow" in data_error(tmp_path / "t.parquet")
    assert "pip install 'deadrelu[parquet]'" in data_error(tmp_path / "t.parquet")
    message = data_error(tmp_path / "x.safetensors")
    assert "safetensors package is not installed" in message
    assert "pip install 'deadrelu[safetensors]'" in message


@pytest.mark.parametrize(
    ("normalize", "mean", "std"),
    [
        ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("0.5,0.25", (0.5,) * 3, (0.25,) * 3),
        ("0.1/0.2/0.3,1/2/4", (0.1, 0.2, 0.3), (1.0, 2.0, 4.0)),
    ],
)
def test_normalize(image_dir, normalize, mean, std):
    root, _ = image_dir
    _, raw = collect(root)
    source, normed = collect(root, normalize=normalize)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normed[0], (raw[0] - m) / s, atol=1e-6)
    assert any("normalized" in n for n in source.notes)


def test_normalize_channel_mismatch(image_dir):
    root, _ = image_dir
    message = data_error(root, normalize="imagenet", channels=1)
    assert "3 per-channel values" in message and "--channels 3" in message


@pytest.mark.parametrize("value", ["bogus", "1,2,3", "a,b", "1/2,1/2/3", "0.5,0"])
def test_bad_normalize_values(value):
    with pytest.raises(ConfigError, match="--normalize"):
        parse_normalize(value)


def test_parse_image_size():
    assert parse_image_size(None) is None
    assert parse_image_size(32) == (32, 32)
    assert parse_image_size("32x16") == (32, 16)
    assert parse_image_size("32,16") == (32, 16)
    assert parse_image_size((4, 5)) == (4, 5)
    for bad in ("big", "0", (1, 2, 3), -3):
        with pytest.raises(ConfigError, match="--image-size"):
            parse_image_size(bad)


# --- tensors and arrays ---------------------------------------------------------------------


def test_pt_tensor(tmp_path):
    x = torch.randn(10, 4, dtype=torch.float64)
    path = tmp_path / "x.pt"
    torch.save(x, path)
    source, batches = collect(path, batch_size=4)
    assert source.num_samples == 10 and source.sample_shape == (4,)
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert batches[0].dtype == torch.float32
    assert torch.allclose(torch.cat(batches), x.float())


def test_pt_tuple_and_input_key(tmp_path):
    x, y = torch.randn(6, 3), torch.arange(6)
    torch.save((x, y), tmp_path / "pair.pth")
    source, batches = collect(tmp_path / "pair.pth")
    assert torch.equal(batches[0], x) and any("first of 2" in n for n in source.notes)
    torch.save({"x": x, "y": y}, tmp_path / "xy.pt")
    _, batches = collect(tmp_path / "xy.pt")
    assert torch.equal(batches[0], x)


def test_pt_dict_of_tensors(tmp_path):
    data = {
        "input_ids": torch.randint(0, 100, (5, 7)),
        "attention_mask": torch.ones(5, 7, dtype=torch.int64),
        "labels": torch.zeros(5),
    }
    path = tmp_path / "tokens.pt"
    torch.save(data, path)
    source, batches = collect(path, batch_size=2)
    assert source.sample_shape is None and source.num_samples == 5
    assert set(batches[0]) == {"input_ids", "attention_mask"}  # labels dropped
    assert batches[0]["input_ids"].dtype == torch.int64  # token ids stay integers
    assert torch.equal(torch.cat([b["input_ids"] for b in batches]), data["input_ids"])


def test_pt_with_python_objects_is_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"x": torch.zeros(2), "meta": Path("x")}, path)
    assert "Python objects" in data_error(path)


def test_pt_not_tensors(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"a": 1}, path)
    assert "not input tensors" in data_error(path)


def test_npy_is_memory_mapped_and_uint8_scaled(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.npy"
    np.save(path, x)
    source, batches = collect(path)
    assert source.sample_shape == (3, 4)
    assert torch.allclose(batches[0], torch.from_numpy(x).float() / 255)
    assert any("uint8" in n for n in source.notes)


def test_npy_object_array(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "cannot be read" in data_error(path)


def test_npz_key_choice(tmp_path):
    x, y = np.random.rand(7, 2).astype(np.float32), np.arange(7)
    np.savez(tmp_path / "xy.npz", y=y, x=x)
    _, batches = collect(tmp_path / "xy.npz")
    assert np.allclose(batches[0].numpy(), x)
    np.savez(tmp_path / "labels_first.npz", labels=y, features=x)
    _, batches = collect(tmp_path / "labels_first.npz")
    assert np.allclose(batches[0].numpy(), x)
    np.savez_compressed(tmp_path / "only.npz", x)
    source, batches = collect(tmp_path / "only.npz", batch_size=3)
    assert source.num_samples == 7 and len(batches) == 3


def test_safetensors_data(tmp_path):
    from safetensors.torch import save_file

    x = torch.randn(9, 2)
    save_file({"x": x, "y": torch.zeros(9)}, str(tmp_path / "d.safetensors"))
    source, batches = collect(tmp_path / "d.safetensors", batch_size=4)
    assert source.num_samples == 9
    assert torch.allclose(torch.cat(batches), x)
    save_file({"a": x, "b": x.clone()}, str(tmp_path / "ambiguous.safetensors"))
    assert "keys: a, b" in data_error(tmp_path / "ambiguous.safetensors")


def test_folder_of_tensor_files_streams_file_by_file(tmp_path):
    parts = [np.random.rand(n, 3).astype(np.float32) for n in (5, 2)]
    for i, part in enumerate(parts):
        np.save(tmp_path / f"part{i}.npy", part)
    source, batches = collect(tmp_path, batch_size=4)
    assert source.num_samples == 7
    assert [b.shape[0] for b in batches] == [4, 1, 2]
    assert np.allclose(torch.cat(batches).numpy(), np.concatenate(parts))


def test_folder_of_tensor_files_with_different_shapes(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", np.zeros((2, 4)))
    message = data_error(tmp_path)
    assert "b.npy" in message and "(4,)" in message and "(3,)" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("garbage.pt", "is corrupt or not a torch tensor file"),
        ("garbage.npy", "is corrupt or not a NumPy .npy file"),
        ("garbage.npz", "is corrupt or not a NumPy .npz archive"),
    ],
)
def test_garbage_tensor_files_are_called_corrupt(tmp_path, name, expected):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    message = data_error(path)
    assert f"data file {path} {expected}" in message
    assert "pickled" not in message and "Decode" not in message
    assert "re-create it with" in message


def test_truncated_and_empty_pt_files(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(torch.zeros(4, 3), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    assert f"data file {cut} looks truncated or corrupt" in data_error(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert f"data file {empty} is empty" in data_error(empty)


def test_state_dict_passed_as_data(tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    message = data_error(path)
    assert f"data file {path} looks like a model checkpoint (a state dict of 4 tensors" in message
    assert "pass it as the MODEL argument and point --data at the model's inputs" in message
    assert "differ in length" not in message

    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    assert "looks like a model checkpoint" in data_error(tmp_path / "model.safetensors")

    from deadrelu.cli import main

    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    with pytest.raises(SystemExit) as info:
        main(["scan", str(whole), "--data", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "looks like a model checkpoint" in err


# --- tables ----------------------------------------------------------------------------------


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "table.csv"
    rows = ["a,b,name,label"] + [f"{i},{i * 0.5},n{i},{i % 2}" for i in range(10)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_csv_with_target(csv_path):
    source, batches = collect(csv_path, target="label", batch_size=4)
    assert source.sample_shape == (2,)
    assert [b.shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    assert torch.allclose(batches[0][1], torch.tensor([1.0, 0.5]))
    assert any("name" in n for n in source.notes)  # non-numeric column dropped
    assert any("'label'" in n for n in source.notes)


def test_csv_without_target_keeps_numeric_label(csv_path):
    source, batches = collect(csv_path)
    assert source.sample_shape == (3,)


def test_csv_description_without_row_count(csv_path, tmp_path):
    source = open_data(csv_path, target="label")
    assert source.num_samples is None
    assert source.description == "a table with 2 numeric columns from table.csv"
    folder = tmp_path / "csvs"
    folder.mkdir()
    for name in ("a.csv", "b.csv"):
        (folder / name).write_text(csv_path.read_text())
    assert open_data(folder).description == f"2 tables with 3 numeric columns in {folder}"


def test_csv_unknown_target_lists_columns(csv_path):
    message = data_error(csv_path, target="y")
    assert "'y'" in message and "a, b, name, label" in message


def test_csv_without_numeric_columns(tmp_path):
    path = tmp_path / "words.csv"
    path.write_text("w\nhello\nworld\n")
    assert "no numeric feature columns" in data_error(path)


def test_csv_non_numeric_value_later_in_file(tmp_path):
    path = tmp_path / "dirty.csv"
    rows = ["a,b"] + [f"{i},{i}" for i in range(1500)] + ["oops,3"]
    path.write_text("\n".join(rows) + "\n")
    message = data_error(path, batch_size=500)
    assert "column 'a'" in message and "'oops'" in message and "row 1501" in message


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "empty" in data_error(path)
    path.write_text("a,b\n")
    assert "no rows" in data_error(path)


def test_parquet_and_folder_of_parts(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {"x1": np.arange(6.0), "x2": np.arange(6) * 2, "city": list("abcdef"), "y": [0, 1] * 3}
    )
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:4].to_parquet(folder / "part-0.parquet")
    frame.iloc[4:].to_parquet(folder / "part-1.parquet")
    source, batches = collect(folder / "part-0.parquet", target="y", batch_size=3)
    assert source.num_samples == 4 and source.sample_shape == (2,)
    assert torch.allclose(torch.cat(batches), torch.tensor([[0.0, 0], [1, 2], [2, 4], [3, 6]]))
    source, batches = collect(folder, target="y", batch_size=3)
    assert source.num_samples == 6 and sum(b.shape[0] for b in batches) == 6


def test_parquet_batches_are_writable_without_warning(tmp_path):
    import warnings

    import pandas as pd

    path = tmp_path / "floats.parquet"
    pd.DataFrame(np.random.rand(5, 3).astype(np.float32), columns=list("abc")).to_parquet(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "The given NumPy array is not writable" would raise
        source, batches = collect(path, batch_size=2)
    assert source.description == "5 rows x 3 numeric columns from floats.parquet"
    batches[0].add_(1.0)  # a real, owned tensor


# --- functions -------------------------------------------------------------------------------

FUNCTIONS = textwrap.dedent(
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    CALLS = []

    def loader(batch_size):
        CALLS.append(batch_size)
        data = TensorDataset(torch.arange(20.0).view(10, 2), torch.zeros(10))
        return DataLoader(data, batch_size=batch_size)

    def generator():
        CALLS.append("gen")
        for i in range(3):
            yield torch.full((2, 5), float(i))

    def tensor():
        return torch.ones(7, 3)

    def broken():
        raise RuntimeError("no data today")

    def not_iterable():
        return 5
    """
)


@pytest.fixture
def functions(tmp_path):
    name = f"datafns_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FUNCTIONS)
    yield name, tmp_path
    sys.modules.pop(name, None)


def test_function_returning_dataloader(functions):
    name, folder = functions
    source, batches = collect(f"{name}:loader", batch_size=4, import_paths=[folder])
    assert source.num_samples == 10 and source.sample_shape == (2,)
    assert [b.shape[0] for b in batches] == [4, 4, 2]  # (x, y) tuples -> x
    assert sys.modules[name].CALLS == [4]


def test_function_returning_generator_is_reiterable(functions):
    name, folder = functions
    source = open_data(f"{name}:generator", import_paths=[folder])
    assert source.sample_shape == (5,)
    first, second = list(source), list(source)
    assert len(first) == len(second) == 3
    assert torch.equal(first[0], torch.zeros(2, 5))  # the peeked batch is not lost


def test_function_from_file_returning_tensor(functions):
    name, folder = functions
    source, batches = collect(f"{folder / name}.py:tensor", batch_size=4)
    assert source.num_samples == 7 and [b.shape[0] for b in batches] == [4, 3]


@pytest.mark.parametrize(
    ("attr", "expected"),
    [("broken", "no data today"), ("not_iterable", "not iterable"), ("missing", "no attribute")],
)
def test_bad_functions(functions, attr, expected):
    name, folder = functions
    assert expected in data_error(f"{name}:{attr}", import_paths=[folder])


# --- limit, errors ---------------------------------------------------------------------------


def test_limit_everywhere(image_dir, csv_path, functions, tmp_path):
    root, _ = image_dir
    np.save(tmp_path / "x.npy", np.zeros((50, 2), np.float32))
    name, folder = functions
    for spec, kwargs in [
        (root, {}),
        (tmp_path / "x.npy", {}),
        (csv_path, {}),
        (f"{name}:loader", {"import_paths": [folder]}),
        (f"{name}:generator", {"import_paths": [folder]}),
    ]:
        source, batches = collect(spec, limit=3, batch_size=2, **kwargs)
        assert sum(b.shape[0] for b in batches) == 3, spec
        assert source.num_samples in (3, None)


def test_missing_path(tmp_path):
    message = data_error(tmp_path / "nowhere")
    assert "does not exist" in message and "nowhere" in message


def test_empty_folder(tmp_path):
    assert "is empty" in data_error(tmp_path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("?")
    assert "unsupported extension '.xyz'" in data_error(path)


def test_folder_without_data_files(tmp_path):
    (tmp_path / "notes.md").write_text("hi")
    assert "no images, tensor or table files" in data_error(tmp_path)


def test_mixed_folder(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    (tmp_path / "t.csv").write_text("a\n1\n")
    assert "mixes kinds" in data_error(tmp_path)


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"limit": 0}, {"channels": 2}, {"normalize": "1,2,3"}]
)
def test_bad_options(csv_path, kwargs):
    data_error(csv_path, exc_type=ConfigError, **kwargs)
