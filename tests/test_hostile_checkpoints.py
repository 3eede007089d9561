"""Hostile model files, built here: each way in is refused without ``--trust-checkpoint``.

For every mechanism the test builds a file whose payload writes a canary file,
then shows both halves of the promise through ``scan``, ``check`` and ``track``:

* without ``--trust-checkpoint``: no canary, exit 2, one ``error:`` line, and
  every input (model file, data, code folder) byte-identical;
* with it: the canary appears, so the payload in the test file is real and it is
  deadrelu's check, not a broken payload, that stopped it. Even then stderr has
  no traceback, only one-line ``warning:``/``error:`` messages.

TorchScript is the exception on the CLI: no command loads it at all (it cannot
be scanned), so its payload is shown live through ``load_model(trust_checkpoint=True)``.
"""

from __future__ import annotations

import copyreg
import io
import json
import shutil
import struct
import subprocess
import sys
import textwrap
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import digests
from torch import nn

from deadrelu.errors import CheckpointError
from deadrelu.loading import load_model

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
MLP_ARCH = f"{SM / 'models.py'}:DigitsMLP"


@dataclass
class Hostile:
    """A hostile model file and what a run needs around it."""

    model: Path
    canary: Path
    import_paths: list[Path] = field(default_factory=list)  # the user's --import-path
    inputs: list[Path] = field(default_factory=list)  # besides the model and the data
    setup: Callable[[], None] | None = None  # run just before a trusted load
    teardown: Callable[[], None] | None = None


# --- building blocks ---------------------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _exec_pickle(code: str) -> bytes:
    """A protocol-2 pickle of ``builtins.exec(code)``."""
    return b"\x80\x02" + _global("builtins", "exec") + _unicode(code) + b"\x85R."


def _write_canary(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').write('pwned')"


def _torch_save_zip(path: Path, data_pkl: list[tuple[str, bytes]]) -> None:
    """A torch.save archive whose pickle record(s) are replaced by ``data_pkl`` (name, bytes)."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(buffer) as src:
        others = [(n.split("/", 1)[1], src.read(n)) for n in src.namelist()
                  if not n.endswith("data.pkl")]
    with zipfile.ZipFile(path, "w") as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a repeated name: that is the point
        for name, data in data_pkl:
            dst.writestr(f"archive/{name}", data)
        for name, data in others:
            dst.writestr(f"archive/{name}", data)


def _plain_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members:
            dst.writestr(name, data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A plain torch.export archive of a digits MLP, dynamic in the batch dimension."""
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    batch = torch.export.Dim("batch", min=2, max=1024)
    program = torch.export.export(model, (torch.randn(4, 64),), dynamic_shapes=({0: batch},))
    path = tmp_path_factory.mktemp("export") / "program.pt2"
    torch.export.save(program, path)
    return path


def _export_members(exported: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(exported) as src:
        return [(n, src.read(n)) for n in src.namelist()]


def _export_parts(exported: Path) -> tuple[list[tuple[str, bytes]], str, dict[str, bytes]]:
    """The members of an export archive, its top folder, and the members by name."""
    members = _export_members(exported)
    return members, members[0][0].split("/")[0], dict(members)


def _with_constant(members: list[tuple[str, bytes]], folder: str, by_name: dict[str, bytes],
                   key: str, **changes: object) -> tuple[list[tuple[str, bytes]], dict]:
    """``members`` whose constants table holds one entry ``key``: the first weight's entry
    with ``changes``; also returns the weight's entry as it was."""
    weights = json.loads(by_name[f"{folder}/data/weights/model_weights_config.json"])
    original = dict(next(iter(weights["config"].values())))
    config_name = f"{folder}/data/constants/model_constants_config.json"
    members = [(n, d) for n, d in members if n != config_name]
    members.append((config_name, json.dumps({"config": {key: {**original, **changes}}}).encode()))
    return members, original


# --- one builder per mechanism ------------------------------------------------------------


def aotinductor(tmp: Path, exported: Path) -> Hostile:
    """A valid export archive plus data/aotinductor/: torch.export.load dlopens the library."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the shared library payload")
    canary = tmp / "canary"
    source = tmp / "payload.c"
    source.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        __attribute__((constructor)) static void payload(void) {{
            FILE *f = fopen("{canary}", "w");
            if (f) {{ fputs("pwned", f); fclose(f); }}
        }}
    """))
    library = tmp / "payload.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    members, folder, _ = _export_parts(exported)
    members += [
        (f"{folder}/data/aotinductor/model/x.wrapper.so", library.read_bytes()),
        (f"{folder}/data/aotinductor/model/x.wrapper_metadata.json",
         json.dumps({"AOTI_DEVICE_KEY": "cpu"}).encode()),
    ]
    path = tmp / "aoti.pt2"
    _plain_zip(path, members)
    library.unlink()
    return Hostile(path, canary)


def legacy_export(tmp: Path, exported: Path) -> Hostile:
    """The pre-2.8 .pt2 layout: torch retries serialized_state_dict.json with weights_only=False."""
    canary = tmp / "canary"
    program = dict(_export_members(exported))
    folder = next(iter(program)).split("/")[0]

    def saved(obj: object) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    state = tmp / "state.pt"
    _torch_save_zip(state, [("data.pkl", _exec_pickle(_write_canary(canary)))])
    evil = state.read_bytes()
    state.unlink()
    path = tmp / "legacy.pt2"
    _plain_zip(path, [
        ("version", b"8.20"),
        ("serialized_exported_program.json", program[f"{folder}/models/model.json"]),
        ("serialized_state_dict.json", evil),
        ("serialized_constants.pt", saved({})),
        ("serialized_example_inputs.pt", saved(((torch.randn(4, 64),), {}))),
    ])
    return Hostile(path, canary)


def program_by_case(tmp: Path, exported: Path) -> Hostile:
    """A second program models/m2.JSON whose shape expression is Python code."""
    canary = tmp / "canary"
    members, folder, by_name = _export_parts(exported)
    program = by_name[f"{folder}/models/model.json"].decode()
    code = f"__import__('builtins').exec({_write_canary(canary)!r})"
    evil = program.replace('"expr_str": "Symbol', f'"expr_str": "{json.dumps(code)[1:-1]} or Symbol', 1)
    assert evil != program
    for kind in ("weights", "constants"):
        members.append((f"{folder}/data/{kind}/m2_{kind}_config.json",
                        by_name[f"{folder}/data/{kind}/model_{kind}_config.json"]))
    members.append((f"{folder}/data/sample_inputs/m2.pt",
                    by_name[f"{folder}/data/sample_inputs/model.pt"]))
    members.append((f"{folder}/models/m2.JSON", evil.encode()))
    path = tmp / "case.pt2"
    _plain_zip(path, members)
    return Hostile(path, canary)


def opaque_constant(tmp: Path, exported: Path) -> Hostile:
    """A constant stored as opaque_obj_0: torch.export.load runs pickle.loads on it."""
    canary = tmp / "canary"
    members, folder, by_name = _export_parts(exported)
    members, weight = _with_constant(members, folder, by_name, "evil", path_name="opaque_obj_0",
                                     use_pickle=False, is_param=False)
    # torch first maps every record as the tensor its entry describes, so the pickle is
    # padded to that tensor's size (pickle.loads ignores bytes after STOP).
    payload = _exec_pickle(_write_canary(canary))
    size = len(by_name[f"{folder}/data/weights/{weight['path_name']}"])
    members.append((f"{folder}/data/constants/opaque_obj_0", payload.ljust(size, b"\0")))
    path = tmp / "opaque.pt2"
    _plain_zip(path, members)
    return Hostile(path, canary)


class _ScriptedWriter(nn.Module):
    """A TorchScript module whose scripted __setstate__ writes (zeros) to a file when loaded."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.mark = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = state[1]
        # Kept in an attribute so the scripted graph cannot drop the write as dead code.
        self.mark = int(torch.from_file(state[0], True, 8, dtype=torch.uint8).fill_(0).sum())


def torchscript(tmp: Path, exported: Path) -> Hostile:
    canary = tmp / "canary"
    path = tmp / "scripted.pt"
    torch.jit.save(torch.jit.script(_ScriptedWriter(str(canary))), path)
    return Hostile(path, canary)


#: A model class whose constructor writes the canary file it is given: it must never run.
WRITER = """
    from torch import nn

    class Writer(nn.Module):
        def __init__(self, path=None):
            super().__init__()
            if path:
                open(path, "w").write("pwned")
            self.fc = nn.Linear(64, 10)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(x))
"""


def _code_folder(tmp: Path, source: str) -> tuple[Path, str]:
    """A module of the test's own, in its own folder, under a name no other test uses."""
    name = f"hostile_{uuid.uuid4().hex[:10]}"
    folder = tmp / "code"
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return folder, name


def rebuild_from_type(tmp: Path, exported: Path) -> Hostile:
    """torch's allowed _rebuild_from_type_v2(cls, cls, args, state) calls an allowed model
    class with the file's arguments: its constructor's side effect must not run."""
    canary = tmp / "canary"
    folder, name = _code_folder(tmp, WRITER)
    data = (b"\x80\x02" + _global("torch._tensor", "_rebuild_from_type_v2") + b"("
            + _global(name, "Writer") + _global(name, "Writer")
            + _unicode(str(canary)) + b"\x85}tR.")
    path = tmp / "ctor.pt"
    _torch_save_zip(path, [("data.pkl", data)])
    return Hostile(path, canary, [folder], [folder],
                   teardown=lambda: sys.modules.pop(name, None))


def import_side_effect(tmp: Path, exported: Path) -> Hostile:
    """A global in a module on the path (the working directory) whose import writes a file."""
    canary = tmp / "canary"
    folder, name = _code_folder(tmp, f"""
        from torch import nn
        open({str(canary)!r}, "w").write("pwned")

        class Anything(nn.Module):
            pass
    """)
    data = b"\x80\x02" + _global(name, "Anything") + b")\x81."
    path = tmp / "imports.pt"
    _torch_save_zip(path, [("data.pkl", data)])
    sys.path.insert(0, str(folder))

    def teardown() -> None:
        while str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.modules.pop(name, None)

    return Hostile(path, canary, inputs=[folder], teardown=teardown)


def _empty_dict_pickle() -> bytes:
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(buffer) as src:
        return src.read(next(n for n in src.namelist() if n.endswith("data.pkl")))


def duplicate_member(tmp: Path, exported: Path) -> Hostile:
    """Two archive/data.pkl records: a checker and torch's reader may pick different ones
    (this torch reads the last)."""
    canary = tmp / "canary"
    path = tmp / "twice.pt"
    _torch_save_zip(path, [("data.pkl", _empty_dict_pickle()),
                           ("data.pkl", _exec_pickle(_write_canary(canary)))])
    return Hostile(path, canary)


def case_member(tmp: Path, exported: Path) -> Hostile:
    """A plain archive/data.pkl, then archive/DATA.PKL: a case-sensitive checker reads the
    first, torch (which looks names up without regard to case) the second."""
    canary = tmp / "canary"
    path = tmp / "case.pt"
    _torch_save_zip(path, [("data.pkl", _empty_dict_pickle()),
                           ("DATA.PKL", _exec_pickle(_write_canary(canary)))])
    return Hostile(path, canary)


def extension_code(tmp: Path, exported: Path) -> Hostile:
    """A callable fetched through copyreg's extension registry (EXT1) hides its name."""
    canary = tmp / "canary"
    code = 0xF1
    data = b"\x80\x02\x82" + bytes([code]) + _unicode(_write_canary(canary)) + b"\x85R."
    path = tmp / "ext.pt"
    _torch_save_zip(path, [("data.pkl", data)])
    return Hostile(
        path, canary,
        setup=lambda: copyreg.add_extension("builtins", "exec", code),
        teardown=lambda: copyreg.remove_extension("builtins", "exec", code)
        if copyreg._extension_registry.get(("builtins", "exec")) == code else None,
    )


def zip_appended_to_legacy(tmp: Path, exported: Path) -> Hostile:
    """A legacy (pre-1.6) pickle with a harmless zip checkpoint appended: torch.load reads the
    pickle (it looks at the first bytes), Python's zipfile the zip (it looks at the end)."""
    canary = tmp / "canary"
    folder, name = _code_folder(tmp, WRITER)
    import pickle

    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, sys_info))
    call = (b"\x80\x02" + _global("torch._tensor", "_rebuild_from_type_v2") + b"("
            + _global(name, "Writer") + _global(name, "Writer")
            + _unicode(str(canary)) + b"\x85}tR.")
    harmless = tmp / "harmless.pt"  # allocates Writer only, which a check alone would allow
    _torch_save_zip(harmless, [("data.pkl", b"\x80\x02" + _global(name, "Writer") + b")\x81.")])
    path = tmp / "polyglot.pt"
    path.write_bytes(header + call + pickle.dumps([], protocol=2) + harmless.read_bytes())
    harmless.unlink()
    return Hostile(path, canary, [folder], [folder], teardown=lambda: sys.modules.pop(name, None))


BUILDERS = [aotinductor, legacy_export, program_by_case, opaque_constant, torchscript,
            rebuild_from_type, import_side_effect, duplicate_member, case_member, extension_code,
            zip_appended_to_legacy]


# --- running the CLI ---------------------------------------------------------------------


@pytest.fixture
def cli_columns() -> int:
    return 200  # hostile file names in the asserted error lines


def _command(command: str, hostile: Hostile, data: Path, tmp: Path) -> list[object]:
    extra = [arg for folder in hostile.import_paths for arg in ("--import-path", folder)]
    if command == "track":
        series = tmp / "series"
        series.mkdir()
        shutil.copy(hostile.model, series / f"step_1{hostile.model.suffix}")
        shutil.copy(SM / "mlp_healthy.pt", series / "step_2.pt")
        return ["track", f"{series}/step_*", "--data", data, "--arch", MLP_ARCH, "--no-progress",
                *extra]
    return [command, hostile.model, "--data", data, "--no-progress", *extra]




@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def data(tmp_path) -> Path:
    """A copy of the digits data: a payload that writes to --data must not reach the repository."""
    copy = tmp_path / "digits.npy"
    shutil.copy(SM / "data" / "digits_test.npy", copy)
    return copy


COMMANDS = ["scan", "check", "track"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_refused_without_trust(build, command, cli, tmp_path, workdir, data, exported):
    hostile = build(tmp_path, exported)
    args = _command(command, hostile, data, tmp_path)
    inputs = [hostile.model, data, *hostile.inputs]
    before = digests(*inputs)
    try:
        result = cli(*args)
    finally:
        if hostile.teardown:
            hostile.teardown()
    assert not hostile.canary.exists(), result.err
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert digests(*inputs) == before
    assert result.out == ""


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("build", [b for b in BUILDERS if b is not torchscript],
                         ids=lambda b: b.__name__)
def test_payload_is_live_with_trust(build, command, cli, tmp_path, workdir, data, exported):
    hostile = build(tmp_path, exported)
    args = _command(command, hostile, data, tmp_path)
    if hostile.setup:
        hostile.setup()
    try:
        result = cli(*args, "--trust-checkpoint")
    finally:
        if hostile.teardown:
            hostile.teardown()
    assert hostile.canary.exists(), result.err
    # torch's own multi-line tracebacks and log records stay off stderr.
    assert "Traceback" not in result.err and "File \"" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) <= 1 and (errors or result.code in (0, 1)), result.err
    if errors:
        assert result.code == 2
        # A failed run says so in one-line messages only: nothing torch printed itself.
        assert all(line.startswith(("warning: ", "error: ", "[")) for line in lines), result.err


@pytest.mark.parametrize("command", COMMANDS)
def test_torchscript_is_never_loaded_by_the_cli(command, cli, tmp_path, workdir, data, exported):
    hostile = torchscript(tmp_path, exported)
    result = cli(*_command(command, hostile, data, tmp_path), "--trust-checkpoint")
    assert not hostile.canary.exists()
    assert result.code == 2 and "TorchScript" in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_torchscript_payload_is_live_when_loaded_trusted(tmp_path, exported):
    hostile = torchscript(tmp_path, exported)
    with pytest.raises(CheckpointError, match="TorchScript.*--trust-checkpoint"):
        load_model(hostile.model)
    assert not hostile.canary.exists()
    with pytest.warns(UserWarning, match="code stored in the file may run"):
        load_model(hostile.model, trust_checkpoint=True)
    assert hostile.canary.exists()


# --- the reasons given, mechanism by mechanism ----------------------------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (aotinductor, "data/aotinductor/model/x.wrapper.so"),
        (legacy_export, "pre-2.8 layout"),
        (program_by_case, "models/m2.JSON"),
        (opaque_constant, "data/constants/opaque_obj_0"),
        (torchscript, "TorchScript"),
        (rebuild_from_type, "Writer (a model class, but called with arguments from the file)"),
        (import_side_effect, "--import-path"),
        (duplicate_member, "the name archive/data.pkl twice"),
        (case_member, "archive/data.pkl and archive/DATA.PKL, names that differ only by case"),
        # Removing the branch that refuses extension codes leaves torch's own
        # rejection, which does not say this.
        (extension_code, "uses pickle extension codes"),
        (zip_appended_to_legacy, "Writer (a model class, but called with arguments from the file)"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_each_refusal_names_its_reason(build, expected, tmp_path, workdir, exported):
    hostile = build(tmp_path, exported)
    try:
        with pytest.raises(CheckpointError) as info:
            load_model(hostile.model, import_paths=hostile.import_paths)
    finally:
        if hostile.teardown:
            hostile.teardown()
    assert expected in str(info.value)
    assert "--trust-checkpoint" in str(info.value) or build is import_side_effect
    assert not hostile.canary.exists()


def test_opaque_constant_is_refused_even_when_its_member_is_named_custom(tmp_path, exported):
    # The constants table must point only at raw tensor records: an entry naming a
    # custom_obj_ record that the archive does not even hold is refused by the table check.
    members, _ = _with_constant(*_export_parts(exported), "obj", path_name="custom_obj_0")
    path = tmp_path / "custom.pt2"
    _plain_zip(path, members)
    with pytest.raises(CheckpointError, match="not a raw tensor record"):
        load_model(path)


# --- bounded reads, half-built objects, what may be imported ---------------------------------


_MAX_RSS = """
import resource, sys
from deadrelu.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _scan_rss(model: Path, data: Path) -> tuple[int, int, str]:
    """Exit code, peak resident memory (KiB) and stderr of a scan in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _MAX_RSS, "scan", str(model), "--data", str(data),
                           "--no-progress"], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    code, rss = done.stdout.split()[-2:]
    return int(code), int(rss), done.stderr


def test_a_decompression_bomb_is_refused_without_reading_it(tmp_path, data):
    bomb = tmp_path / "bomb.pt"
    _torch_save_zip(bomb, [])
    chunk = b"N" * (1 << 20)  # NONE opcodes: a valid pickle prefix, 300 MiB of it
    with (zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
          archive.open("archive/data.pkl", "w", force_zip64=True) as stream):
        for _ in range(300):
            stream.write(chunk)
    assert bomb.stat().st_size < 5 << 20
    small = tmp_path / "small.pt"
    _torch_save_zip(small, [("data.pkl", _exec_pickle("pass"))])
    code, rss, err = _scan_rss(bomb, data)
    assert code == 2 and "decompresses to more than 64 MiB" in err, err
    assert len(err.strip().splitlines()) == 1
    _, baseline, _ = _scan_rss(small, data)  # the same process refusing a small file
    assert rss < baseline + 100 * 1024, (rss, baseline)


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_module_allocated_without_its_state_is_one_line(command, trusted, cli, tmp_path, data):
    path = tmp_path / "half.pt"
    _torch_save_zip(path, [("data.pkl", b"\x80\x02" + _global("torch.nn.modules.linear", "Linear")
                            + b")\x81.")])
    args = _command(command, Hostile(path, tmp_path / "unused"), data, tmp_path)
    result = cli(*args, *(["--trust-checkpoint"] if trusted else []))
    assert result.code == 2, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "never initialised" in errors[0], result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("module", "import_paths", "arch", "allowed"),
    [
        ("torch.nn.modules.linear", [], None, True),
        ("torch.utils.model_dump.__main__", [], None, False),  # runs a program when imported
        ("torch.testing._internal.common_utils", [], None, False),
        ("matplotlib.pyplot", [], None, False),  # installed, but not the user's code
        ("antigravity", [], None, False),
        ("mynets.blocks", [], "mynets.models:Net", True),
        ("othernets", [], "mynets.models:Net", False),
        ("models", [], f"{SM / 'models.py'}:DigitsMLP", True),
        ("train", [], f"{SM / 'models.py'}:DigitsMLP", False),  # a sibling of the --arch file
        ("models", [SM], None, True),
        ("train", [SM], None, True),  # the user named the folder
        ("nosuchmodule", [SM], None, False),
    ],
)
def test_may_import_is_decided_from_the_name_alone(module, import_paths, arch, allowed):
    from deadrelu.loading.allowlist import may_import

    before = set(sys.modules)
    assert may_import(module, import_paths=import_paths, arch=arch) is allowed
    assert set(sys.modules) == before  # deciding imported nothing


def test_the_working_directory_is_not_searched_for_pickled_classes(tmp_path, workdir):
    # train.Anything next to the checkpoint: refused by name, train.py never runs.
    canary = tmp_path / "canary"
    (workdir / "train.py").write_text(f"open({str(canary)!r}, 'w').write('pwned')\n")
    path = workdir / "model.pt"
    _torch_save_zip(path, [("data.pkl", b"\x80\x02" + _global("train", "Anything") + b")\x81.")])
    with pytest.raises(CheckpointError, match="--import-path"):
        load_model(path)
    assert not canary.exists() and "train" not in sys.modules


def test_a_trusted_file_calling_sys_exit_is_one_line(cli, tmp_path, data):
    path = tmp_path / "exits.pt"
    _torch_save_zip(path, [("data.pkl", _exec_pickle("import sys; sys.exit(7)"))])
    result = cli("scan", path, "--data", data, "--trust-checkpoint")
    assert result.code == 2, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "sys.exit(7)" in errors[0], result.err


def test_a_model_class_reaching_a_call_through_a_memoised_list_counts_as_called(tmp_path):
    # The class goes into a list after the list is memoised; the list, fetched back from
    # the memo, is then the argument of a call: the class is called with it.
    module = "torch.nn.modules.linear"
    data = (b"\x80\x02]q\x00" + _global(module, "Linear") + b"a"  # [] memo 0, append Linear
            + _global("torch._tensor", "_rebuild_from_type_v2")
            + b"h\x00\x85R.")  # _rebuild_from_type_v2(memo[0])
    path = tmp_path / "memo.pt"
    _torch_save_zip(path, [("data.pkl", data)])
    with pytest.raises(CheckpointError, match="Linear \\(a model class, but called"):
        load_model(path)


def test_a_module_whose_parameter_is_not_a_tensor_is_one_line(cli, tmp_path, data):
    state = (b"}(" + _unicode("_parameters") + b"}" + _unicode("weight") + _unicode("x") + b"s"
             + _unicode("_buffers") + b"}" + _unicode("_modules") + b"}u")
    path = tmp_path / "odd.pt"
    _torch_save_zip(path, [("data.pkl", b"\x80\x02" + _global("torch.nn.modules.linear", "Linear")
                            + b")\x81" + state + b"b.")])
    result = cli("scan", path, "--data", data)
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and "parameter 'weight' is a str" in result.err


def test_a_deeply_nested_program_is_one_line(cli, tmp_path, data, exported):
    members = [(n, b"[" * 200_000 + b"]" * 200_000 if n.endswith("models/model.json") else d)
               for n, d in _export_members(exported)]
    path = tmp_path / "deep.pt2"
    _plain_zip(path, members)
    result = cli("scan", path, "--data", data)
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and "torch.export archive" in result.err


def test_a_class_allowed_through_an_arch_file_is_imported_from_that_file(tmp_path, workdir):
    # models.py beside --arch is the user's; a models.py in the working directory is not,
    # and must not be the one imported.
    canary = tmp_path / "canary"
    name = f"hostile_{uuid.uuid4().hex[:10]}"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{name}.py").write_text("from torch import nn\n\nclass Net(nn.Module):\n    pass\n")
    (workdir / f"{name}.py").write_text(f"open({str(canary)!r}, 'w').write('pwned')\n")
    path = tmp_path / "model.pt"
    state = (b"}(" + _unicode("_parameters") + b"}" + _unicode("_buffers") + b"}"
             + _unicode("_modules") + b"}u")
    _torch_save_zip(path, [("data.pkl", b"\x80\x02" + _global(name, "Net") + b")\x81" + state
                            + b"b.")])
    try:
        loaded = load_model(path, arch=f"{code / name}.py:Net")
    finally:
        sys.modules.pop(name, None)
    assert type(loaded.model).__name__ == "Net" and not canary.exists()


def test_a_refused_file_never_imports_the_users_modules(tmp_path, workdir):
    # The file names the user's own module (allowed to be imported) and builtins.exec:
    # refused for exec before the user's module is imported for the other name.
    canary = tmp_path / "canary"
    folder, name = _code_folder(tmp_path, f"""
        from torch import nn
        open({str(canary)!r}, "w").write("imported")

        class Net(nn.Module):
            pass
    """)
    data = (b"\x80\x02(" + _global(name, "Net") + b")\x81"
            + _global("builtins", "exec") + _unicode("pass") + b"\x85Rl.")
    path = tmp_path / "mixed.pt"
    _torch_save_zip(path, [("data.pkl", data)])
    try:
        with pytest.raises(CheckpointError, match="builtins.exec"):
            load_model(path, import_paths=[folder])
    finally:
        sys.modules.pop(name, None)
    assert not canary.exists()
