"""load_model: every format round-trips; unsafe, broken and mismatched files fail clearly."""

from __future__ import annotations

import argparse
import builtins
import hashlib
import importlib
import os
import sys
import textwrap
import uuid
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from deadrelu.errors import CheckpointError, ConfigError
from deadrelu.loading import LoadedModel, load_model

NETS_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=8, classes=3):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.act = nn.ReLU()
            self.fc = nn.Linear(width, classes)

        def forward(self, x):
            return self.fc(self.act(self.bn(self.conv(x))).mean((2, 3)))

    def make_net(width=8, classes=3):
        return Net(width=width, classes=classes)

    def make_nothing():
        return 42

    def make_broken():
        raise RuntimeError("factory exploded")

    NOT_CALLABLE = 7
    """
)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_unchanged(path: Path, **kwargs) -> LoadedModel:
    """load_model, asserting the file is byte-identical afterwards."""
    before = digest(path)
    loaded = load_model(path, **kwargs)
    assert digest(path) == before
    return loaded


def same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    a.eval()
    b.eval()
    with torch.no_grad():
        return torch.allclose(a(x), b(x))


def error_of(exc_type, path, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        load_model(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert " — " in message, message  # problem — fix
    return message


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """A throwaway model module in its own directory, imported under a unique name."""
    name = f"nets_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(NETS_SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)
    yield module, folder
    sys.modules.pop(name, None)


def forget(module) -> None:
    """Simulate a fresh process: the module is no longer imported or importable."""
    sys.modules.pop(module.__name__, None)
    folder = str(Path(module.__file__).parent)
    while folder in sys.path:
        sys.path.remove(folder)
    importlib.invalidate_caches()


# --- whole-model pickles -------------------------------------------------------------


def test_pickled_sequential_round_trips(tmp_path):
    model = mlp().eval()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    loaded = load_unchanged(path)
    assert loaded.format == "pickle"
    assert "Sequential" in loaded.description
    assert same_outputs(model, loaded.model, torch.randn(5, 4))


def test_pickled_transformer_layer_with_functional_activation(tmp_path):
    # TransformerEncoderLayer keeps F.relu as an attribute: a function global.
    model = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0).eval()
    path = tmp_path / "tr.pth"
    torch.save(model, path)
    loaded = load_unchanged(path)
    assert same_outputs(model, loaded.model, torch.randn(2, 5, 8))


def test_custom_class_needs_import_path(nets, tmp_path):
    module, folder = nets
    model = module.Net().eval()
    path = tmp_path / "net.pt"
    torch.save(model, path)
    forget(module)
    message = error_of(CheckpointError, path)
    assert f"{module.__name__}.Net" in message and "--import-path" in message
    saved_path = list(sys.path)
    loaded = load_unchanged(path, import_paths=[folder])
    assert sys.path == saved_path  # restored
    assert type(loaded.model).__name__ == "Net"
    assert same_outputs(model, loaded.model, torch.randn(2, 3, 6, 6))


def test_class_from_current_directory_needs_import_path(nets, tmp_path, monkeypatch):
    # The working directory is not trusted: a file naming train.Anything must not
    # make deadrelu import train.py. --import-path . says the user trusts it.
    module, folder = nets
    path = tmp_path / "net.pt"
    torch.save(module.Net(), path)
    forget(module)
    monkeypatch.chdir(folder)
    message = error_of(CheckpointError, path)
    assert "--import-path" in message and module.__name__ not in sys.modules
    assert load_unchanged(path, import_paths=[Path(".")]).format == "pickle"


def test_main_class_message(tmp_path):
    model = mlp()
    path = tmp_path / "m.pt"
    torch.save(model, path)
    # Rewrite the class name the file refers to as if defined in a script.
    import zipfile

    with zipfile.ZipFile(path) as src:
        entries = {n: src.read(n) for n in src.namelist()}
    key = next(n for n in entries if n.endswith("data.pkl"))
    old = b"torch.nn.modules.container\nSequential"
    assert old in entries[key]
    entries[key] = entries[key].replace(old, b"__main__\nGhostNet12345")
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(forged, "w") as dst:
        for n, data in entries.items():
            dst.writestr(n, data)
    message = error_of(CheckpointError, forged)
    assert "__main__.GhostNet12345" in message and "script that saved" in message


class _SystemCall:
    def __reduce__(self):
        return (os.system, ("echo pwned > marker",))


class _EvalCall:
    def __reduce__(self):
        return (builtins.eval, ("open('marker', 'w').write('pwned')",))


class _ConstructorCall:
    def __reduce__(self):
        return (nn.Linear, (3, 4))


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        (_SystemCall(), ("posix.system", "os.system", "nt.system")),
        (_EvalCall(), ("builtins.eval",)),
    ],
)
def test_code_execution_globals_are_refused(tmp_path, monkeypatch, payload, names):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": payload}, path)
    before = digest(path)
    message = error_of(CheckpointError, path)
    assert any(name in message for name in names), message
    assert "--trust-checkpoint" in message
    assert not (tmp_path / "marker").exists()
    assert digest(path) == before


def test_calling_a_module_constructor_is_refused(tmp_path):
    path = tmp_path / "ctor.pt"
    torch.save({"layer": _ConstructorCall()}, path)
    message = error_of(CheckpointError, path)
    assert "torch.nn.modules.linear.Linear (a model class, but called" in message


def test_trust_checkpoint_loads_with_warning(tmp_path):
    model = mlp().eval()
    path = tmp_path / "with_args.ckpt"
    torch.save({"model": model, "args": argparse.Namespace(lr=0.1)}, path)
    message = error_of(CheckpointError, path)
    assert "argparse.Namespace" in message and "--trust-checkpoint" in message
    with pytest.warns(UserWarning, match="code stored in the file may run") as record:
        loaded = load_unchanged(path, trust_checkpoint=True)
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert same_outputs(model, loaded.model, torch.randn(3, 4))
    assert any("'model'" in note for note in loaded.notes)


def test_legacy_format_whole_model_is_explained(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(mlp(), path, _use_new_zipfile_serialization=False)
    message = error_of(CheckpointError, path)
    assert "legacy" in message and "--trust-checkpoint" in message


def test_pickle_protocol_4_is_explained(tmp_path):
    path = tmp_path / "p4.pt"
    torch.save(mlp(), path, pickle_protocol=4)
    message = error_of(CheckpointError, path)
    assert "protocol 4" in message


def test_whole_model_nested_in_dict(tmp_path):
    model = mlp().eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": model}, path)
    loaded = load_unchanged(path, arch="ignored.module:Thing")
    assert loaded.format == "pickle"
    assert any("--arch" in n for n in loaded.notes)
    assert same_outputs(model, loaded.model, torch.randn(3, 4))


# --- state dicts -----------------------------------------------------------------------


def test_state_dict_without_arch_says_so(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(mlp().state_dict(), path)
    message = error_of(CheckpointError, path)
    assert "this file is a state dict; pass --arch module:Class" in message


def test_state_dict_with_module_factory_and_kwargs(nets, tmp_path):
    module, folder = nets
    model = module.Net(width=5, classes=2).eval()
    path = tmp_path / "sd.pth"
    torch.save(model.state_dict(), path)
    loaded = load_unchanged(
        path, arch=f"{module.__name__}:make_net", arch_kwargs={"width": 5, "classes": 2}
    )
    assert loaded.format == "state_dict"
    assert same_outputs(model, loaded.model, torch.randn(2, 3, 6, 6))


def test_state_dict_with_file_arch(nets, tmp_path):
    module, folder = nets
    model = module.Net().eval()
    path = tmp_path / "sd.bin"
    torch.save(model.state_dict(), path)
    arch = f"{folder / (module.__name__ + '.py')}:Net"
    loaded = load_unchanged(path, arch=arch)
    assert same_outputs(model, loaded.model, torch.randn(2, 3, 6, 6))


def _arch_file(tmp_path: Path) -> str:
    source = tmp_path / "arch_mlp.py"
    source.write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))\n"
    )
    return f"{source}:build"


@pytest.mark.parametrize(
    "key", ["state_dict", "model", "model_state_dict", "net", "network", "ema", "weights"]
)
def test_nested_state_dict_keys(tmp_path, key):
    model = mlp().eval()
    path = tmp_path / "ckpt.ckpt"
    torch.save({key: model.state_dict(), "epoch": 7, "optimizer": {"lr": 0.1}}, path)
    loaded = load_unchanged(path, arch=_arch_file(tmp_path))
    assert same_outputs(model, loaded.model, torch.randn(3, 4))
    assert any(repr(key) in note for note in loaded.notes)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix):
    model = mlp().eval()
    state = OrderedDict((prefix + k, v) for k, v in model.state_dict().items())
    path = tmp_path / "wrapped.pt"
    torch.save(state, path)
    loaded = load_unchanged(path, arch=_arch_file(tmp_path))
    assert same_outputs(model, loaded.model, torch.randn(3, 4))
    for part in prefix.rstrip(".").split("."):
        assert any(f"'{part}.'" in note for note in loaded.notes), loaded.notes


def test_lightning_style_attribute_prefix(tmp_path):
    model = mlp().eval()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["loss_fn.pos_weight"] = torch.ones(1)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 0.1}}, path)
    loaded = load_unchanged(path, arch=_arch_file(tmp_path))
    assert same_outputs(model, loaded.model, torch.randn(3, 4))
    assert any("'model.'" in note for note in loaded.notes)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = mlp().state_dict()
    del state["3.weight"], state["3.bias"]
    state["head.weight"] = torch.zeros(2, 8)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    message = error_of(CheckpointError, path, arch=_arch_file(tmp_path))
    assert "2 key(s) missing" in message and "3.weight" in message and "3.bias" in message
    assert "1 unexpected key(s)" in message and "head.weight" in message


def test_many_missing_keys_are_truncated(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({f"other{i}.weight": torch.zeros(1) for i in range(9)}, path)
    message = error_of(CheckpointError, path, arch=_arch_file(tmp_path))
    assert "9 unexpected key(s)" in message and "..." in message


def test_num_batches_tracked_differences_are_tolerated(tmp_path):
    model = mlp().eval()
    state = model.state_dict()
    del state["1.num_batches_tracked"]  # checkpoints from old torch versions lack it
    state["2.num_batches_tracked"] = torch.tensor(5)  # ...or carry a stray one
    path = tmp_path / "old_bn.pt"
    torch.save(state, path)
    loaded = load_unchanged(path, arch=_arch_file(tmp_path))
    assert loaded.unexpected_keys == ("2.num_batches_tracked",)
    assert any("num_batches_tracked" in note for note in loaded.notes)
    assert same_outputs(model, loaded.model, torch.randn(3, 4))


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    state = mlp().state_dict()
    state["3.weight"] = torch.zeros(5, 8)
    state["3.bias"] = torch.zeros(5)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    message = error_of(CheckpointError, path, arch=_arch_file(tmp_path))
    assert "3.weight" in message and "(5, 8)" in message and "(2, 8)" in message
    assert "1 more" in message


def test_legacy_format_state_dict(tmp_path):
    model = mlp().eval()
    path = tmp_path / "old_sd.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    loaded = load_unchanged(path, arch=_arch_file(tmp_path))
    assert same_outputs(model, loaded.model, torch.randn(3, 4))


# --- safetensors, TorchScript, torch.export ------------------------------------------------


def test_safetensors_round_trip_detected_by_content(tmp_path):
    from safetensors.torch import save_file

    model = mlp().eval()
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = tmp_path / name
        save_file(model.state_dict(), str(path))
        loaded = load_unchanged(path, arch=_arch_file(tmp_path))
        assert loaded.format == "safetensors"
        assert same_outputs(model, loaded.model, torch.randn(3, 4))
    message = error_of(CheckpointError, tmp_path / "model.safetensors")
    assert "--arch" in message


def test_safetensors_missing_package(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(mlp().state_dict(), str(path))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    message = error_of(CheckpointError, path, arch=_arch_file(tmp_path))
    assert "pip install 'deadrelu[safetensors]'" in message


def test_torchscript_round_trip(tmp_path):
    model = mlp().eval()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), path)
    message = error_of(CheckpointError, path)
    assert "TorchScript" in message and "--trust-checkpoint" in message
    with pytest.warns(UserWarning, match="code stored in the file may run"):
        loaded = load_unchanged(path, arch="ignored:x", trust_checkpoint=True)
    assert loaded.format == "torchscript"
    assert any("TorchScript" in note for note in loaded.notes)
    assert same_outputs(model, loaded.model, torch.randn(3, 4))


def test_export_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    path = tmp_path / "program.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(3, 4),)), path)
    loaded = load_unchanged(path)
    assert loaded.format == "export"
    (note,) = [note for note in loaded.notes if "aten" in note]
    # The note says what is seen and what is not, not "what the collector intercepts".
    assert "named by the module path they were traced from (nn_module_stack)" in note
    assert "fused or decomposed into other ops" in note and "custom or opaque ops" in note
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x))


def _rewrite_zip(source: Path, target: Path, edit) -> None:
    """Copy a zip archive, passing each member's bytes through ``edit(name, data)``."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, edit(name, src.read(name)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    path = tmp_path_factory.mktemp("export") / "program.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(3, 4),)), path)
    return path


def _edit_json(suffix: str, change):
    import json

    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith(suffix):
            return data
        content = json.loads(data)
        change(content)
        return json.dumps(content).encode()

    return edit


def _set_first_target(program: dict, target: str) -> None:
    program["graph_module"]["graph"]["nodes"][0]["target"] = target


@pytest.mark.parametrize(
    ("suffix", "change", "expected"),
    [
        ("models/model.json", lambda p: p.update(guards_code=["import os"]), "guards_code"),
        ("models/model.json", lambda p: _set_first_target(p, "torch.save"), "'torch.save'"),
        (
            "weights_config.json",
            lambda c: next(iter(c["config"].values())).update(use_pickle=True),
            "stored as a pickle",
        ),
    ],
)
def test_unsafe_export_archives_are_refused(
    exported, tmp_path, monkeypatch, suffix, change, expected
):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tampered.pt2"
    _rewrite_zip(exported, path, _edit_json(suffix, change))
    message = error_of(CheckpointError, path)
    assert expected in message and "--trust-checkpoint" in message


def test_export_with_unsafe_sample_inputs_is_refused(exported, tmp_path):
    evil = tmp_path / "evil_inputs.pt"
    torch.save({"payload": _SystemCall()}, evil)
    path = tmp_path / "tampered.pt2"
    _rewrite_zip(
        exported,
        path,
        lambda n, d: evil.read_bytes() if n.endswith("sample_inputs/model.pt") else d,
    )
    assert "posix.system" in error_of(CheckpointError, path) or os.name != "posix"


# --- broken files and bad paths ----------------------------------------------------------


def test_missing_file(tmp_path):
    assert "does not exist" in error_of(CheckpointError, tmp_path / "nope.pt")


def test_directory(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    message = error_of(CheckpointError, tmp_path)
    assert "is a directory" in message and "model.safetensors" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty" in error_of(CheckpointError, path)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_zip_checkpoint(tmp_path, fraction):
    full = tmp_path / "full.pt"
    torch.save(mlp(), full)
    data = full.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated or corrupt" in error_of(CheckpointError, path)


def test_truncated_safetensors(tmp_path):
    from safetensors.torch import save_file

    full = tmp_path / "full.safetensors"
    save_file(mlp().state_dict(), str(full))
    path = tmp_path / "cut.safetensors"
    path.write_bytes(full.read_bytes()[:-40])
    assert "truncated or corrupt" in error_of(CheckpointError, path, arch=_arch_file(tmp_path))


def test_text_file_with_torch_extension(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("this is not a model\n")
    assert "truncated or corrupt" in error_of(CheckpointError, path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    message = error_of(CheckpointError, path)
    assert "not a PyTorch model file" in message and "'.txt'" in message


def test_numpy_file_as_model(tmp_path):
    import numpy as np

    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3))
    assert "NumPy" in error_of(CheckpointError, path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"epoch": 3, "lr": 0.1}, "a dict with keys epoch, lr"),
        (torch.zeros(2, 3), "a single tensor of shape (2, 3)"),
        ([1, 2, 3], "a list of 3 items"),
    ],
)
def test_file_that_is_not_a_model(tmp_path, content, expected):
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    message = error_of(CheckpointError, path)
    assert expected in message and "not a model" in message


def test_zip_that_is_not_a_checkpoint(tmp_path):
    import zipfile

    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    assert "zip archive but not a PyTorch checkpoint" in error_of(CheckpointError, path)


# --- --arch validation ---------------------------------------------------------------------


@pytest.fixture
def sd_path(tmp_path, nets):
    module, _ = nets
    path = tmp_path / "net_sd.pt"
    torch.save(module.Net().state_dict(), path)
    return path, module.__name__


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("no_colon_here", "is not of the form module:attr"),
        ("bad name:Net", "is not of the form"),
        ("definitely_missing_pkg_xyz:Net", "no module named 'definitely_missing_pkg_xyz'"),
        ("{mod}:Missing", "has no attribute 'Missing'"),
        ("{mod}:NOT_CALLABLE", "cannot be called"),
        ("{mod}:make_broken", "factory exploded"),
        ("{mod}:make_nothing", "returned a value of type int, not an nn.Module"),
        ("missing_file.py:Net", "does not exist"),
    ],
)
def test_bad_arch_values(sd_path, arch, expected):
    path, mod = sd_path
    arch = arch.format(mod=mod)
    message = error_of(ConfigError, path, arch=arch)
    assert expected in message and repr(arch) in message


def test_arch_kwargs_mismatch_is_config_error(sd_path):
    path, mod = sd_path
    message = error_of(ConfigError, path, arch=f"{mod}:Net", arch_kwargs={"depth": 3})
    assert "depth=3" in message and "--arch-kwargs" in message


def test_arch_file_that_raises_on_import(tmp_path, sd_path):
    path, _ = sd_path
    bad = tmp_path / "bad_arch.py"
    bad.write_text("raise ValueError('boom at import')\n")
    message = error_of(ConfigError, path, arch=f"{bad}:Net")
    assert "boom at import" in message


def test_no_warnings_on_safe_paths(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(mlp(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path)


@pytest.mark.parametrize(
    ("expr", "safe"),
    [
        ("Symbol('s31', positive=True, integer=True)", True),
        ("s0*2 + FloorDiv(s1, 4)", True),
        ("Max(s0, 2) <= 10", True),
        ("eval('1')", False),
        ("__import__('os').system('x')", False),
        ("Symbol('__class__')", False),
        ("s0.__class__", False),
        ("open(s0)", False),
        ("lambda: 1", False),
    ],
)
def test_export_shape_expressions(expr, safe):
    from deadrelu.loading.export_safety import _safe_expression

    assert _safe_expression(expr) is safe
