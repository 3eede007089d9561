"""Load a Hugging Face ``save_pretrained`` directory (``config.json`` + weights) as a model.

The directory route is how most trained networks arrive today: ``config.json``,
``model.safetensors`` (or shards ``model-0000x-of-0000y.safetensors`` with an
index), sometimes ``pytorch_model.bin``, and a tokenizer or preprocessor config.
The model is built by ``transformers`` from the config (never from the network:
``local_files_only``), with the class named by ``--arch`` or, by default, the
config's ``architectures`` entry.

Invariants:

* No code from the directory runs unless the caller passes ``trust_checkpoint``:
  ``trust_remote_code`` is passed as an explicit ``False`` (``None`` would make
  ``transformers`` *ask* on the terminal), and a config that needs custom code
  (``auto_map`` for a model type ``transformers`` does not know) is refused in one line.
* ``pytorch_model.bin`` is read with ``torch.load(weights_only=True)`` (the
  ``transformers`` default, passed explicitly); safetensors are memory-mapped and
  materialised once, on the target device, in the requested dtype.
* Every problem a user can cause is a :class:`~deadrelu.errors.CheckpointError` or
  :class:`~deadrelu.errors.ConfigError` naming the path or value and the fix.
"""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deadrelu.errors import CheckpointError, ConfigError
from deadrelu.loading.imports import one_line

if TYPE_CHECKING:
    from deadrelu.loading.loaded import LoadedModel

#: Weight files of a save_pretrained directory, in the order transformers prefers them.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
DTYPES = ("float32", "float16", "bfloat16")
_EXTRA_FIX = "pip install 'deadrelu[transformers]'"


def hf_directory(path: Path) -> Path | None:
    """The save_pretrained directory ``path`` names, or ``None`` for a single model file.

    A directory names itself (one without config.json is refused later, with a hint
    at the model files inside it); its ``config.json`` or the ``*.index.json`` of
    sharded weights beside a config.json name their folder.
    """
    if path.is_dir():
        return path
    if not path.is_file():
        return None
    if path.name == "config.json":
        return path.parent
    if path.name.endswith(".index.json") and (path.parent / "config.json").is_file():
        return path.parent
    return None


def load_hf_model(
    path: str | Path,
    *,
    arch: str | None = None,
    trust_checkpoint: bool = False,
    dtype: str | None = None,
    device_map: Any = None,
) -> LoadedModel:
    """Build the model of a ``save_pretrained`` directory and load its weights.

    Args:
        path: the directory, or its ``config.json``.
        arch: a ``transformers`` class picking the head, as ``transformers:Name`` or
            ``Name`` (``AutoModelForSequenceClassification``, ``BertModel``...);
            default: the config's ``architectures`` entry, else ``AutoModel``.
        trust_checkpoint: allow custom code shipped with the directory (``auto_map``).
        dtype: ``float32``, ``float16`` or ``bfloat16``; default: the dtype saved in
            the config (``transformers``' ``"auto"``).
        device_map: where to materialise the weights (``"cpu"``, ``"cuda:0"``,
            ``"auto"`` with ``accelerate``, or a module → device dict); default CPU.

    Returns:
        The :class:`~deadrelu.loading.checkpoint.LoadedModel` (format ``"transformers"``).

    Raises:
        CheckpointError: no config.json, no weights, a config that needs remote
            code, an unknown model type, or weights that do not load.
        ConfigError: an ``--arch`` or ``--dtype`` that ``transformers`` does not know.
    """
    from deadrelu.loading.loaded import LoadedModel

    source = Path(path)
    folder = hf_directory(source) or source
    config_path = folder / "config.json"
    raw = _read_config(folder, config_path)
    weights = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        raise CheckpointError(
            f"model directory {folder} has a config.json but no weights (none of "
            f"{', '.join(WEIGHT_FILES)})",
            "save the model with model.save_pretrained(dir), or copy its weight files beside config.json",
        )
    transformers = _import_transformers(folder)
    _check_remote_code(raw, config_path, trust_checkpoint, transformers)
    if not trust_checkpoint and not weights[0].startswith("model.safetensors"):
        _check_pickled_weights(folder, weights[0])
    torch_dtype = _dtype(dtype)
    config = _config(folder, config_path, raw, trust_checkpoint)
    cls, arch_note = _model_class(arch, raw, config, config_path, transformers, trust_checkpoint)
    kwargs: dict[str, Any] = {
        "config": config, "local_files_only": True, "trust_remote_code": trust_checkpoint,
        "weights_only": not trust_checkpoint, "dtype": torch_dtype if torch_dtype is not None else "auto",
        "output_loading_info": True,
    }
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        with _quiet_transformers(), warnings.catch_warnings():
            # a refusal below explains protocol problems; torch's warning would repeat it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            model, info = cls.from_pretrained(str(folder), **kwargs)
    except (CheckpointError, ConfigError):
        raise
    except pickle.UnpicklingError as exc:
        from deadrelu.loading.loaded import TRUST_FIX as _TRUST_FIX
        from deadrelu.loading.loaded import unpickling_reason as _unpickling_reason

        raise CheckpointError(
            f"refusing to load the weights in {folder}: torch's weights-only unpickler rejected "
            f"them ({_unpickling_reason(exc)})",
            _TRUST_FIX,
        ) from exc
    except Exception as exc:
        raise CheckpointError(
            f"{cls.__name__} could not load the weights in {folder}: "
            f"{type(exc).__name__}: {one_line(exc)}",
            _load_fix(exc),
        ) from exc
    model.eval()  # from_pretrained does this too; the scan restores flags to this state
    notes = [arch_note] if arch_note else []
    notes.extend(_loading_notes(info))
    count = sum(p.numel() for p in model.parameters())
    shard = " (sharded)" if weights[0].endswith(".index.json") else ""
    dtype_name = str(next((p.dtype for p in model.parameters()), "")).removeprefix("torch.")
    description = (f"{type(model).__name__} from {folder.name}/ ({weights[0]}{shard}, "
                   f"{count:,} parameters{', ' + dtype_name if dtype_name else ''})")
    missing = tuple(info.get("missing_keys") or ())
    unexpected = tuple(info.get("unexpected_keys") or ())
    return LoadedModel(model, "transformers", description, tuple(notes), missing, unexpected)


def _check_pickled_weights(folder: Path, weights: str) -> None:
    """Put ``pytorch_model.bin`` files through deadrelu's own allowlist before torch sees
    them (as for any model file): they must be plain state dicts."""
    from deadrelu.loading.pickle_safety import allowed_globals, scan_checkpoint

    files = [folder / weights]
    if weights.endswith(".index.json"):
        try:
            index = json.loads(files[0].read_text(encoding="utf-8"))
            files = [folder / name for name in sorted(set(index["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{files[0]} is not a valid weight index ({one_line(exc)})",
                                  "re-save the model with save_pretrained") from exc
    for file in files:
        if not file.is_file():
            raise CheckpointError(f"{file} is listed in {weights} but missing",
                                  "copy every shard of the checkpoint into the directory")
        if allowed_globals(file, scan_checkpoint(file)):
            raise CheckpointError(
                f"{file} holds more than a state dict (it pickles model classes)",
                "re-save the model with save_pretrained, or pass --trust-checkpoint if you "
                "trust the file")


def _read_config(folder: Path, config_path: Path) -> dict[str, Any]:
    if not config_path.is_file():
        from deadrelu.loading.loaded import TORCH_SUFFIXES

        files = sorted(p.name for p in folder.iterdir() if p.suffix in TORCH_SUFFIXES)[:3]
        hint = (f"pass the model file inside it ({', '.join(files)}), or a directory written by "
                "save_pretrained (config.json + weights)") if files else (
            "pass a model file, or a directory written by save_pretrained (config.json + weights)")
        raise CheckpointError(f"model path {folder} is a directory without config.json", hint)
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({one_line(exc)})",
                              "re-save the model with save_pretrained, or fix the file") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path} holds a JSON {type(raw).__name__}, not an object",
                              "re-save the model with save_pretrained")
    return raw


def _import_transformers(folder: Path) -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise CheckpointError(
            f"{folder} is a Hugging Face model directory, which needs the transformers package",
            _EXTRA_FIX,
        ) from exc
    return transformers


def _check_remote_code(raw: dict[str, Any], config_path: Path, trusted: bool,
                       transformers: Any) -> None:
    """Refuse, before transformers sees it, a config whose model only custom code can build."""
    if trusted or "auto_map" not in raw:
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if raw.get("model_type") in CONFIG_MAPPING_NAMES:
        return  # a built-in type: transformers builds it without the repository's code
    raise CheckpointError(
        f"{config_path} needs custom code from the model's repository to build the model "
        f"(auto_map, model type {raw.get('model_type')!r} is not built into transformers "
        f"{transformers.__version__})",
        "pass --trust-checkpoint to run that code if you trust where the directory came from",
    )


def _config(folder: Path, config_path: Path, raw: dict[str, Any], trusted: bool) -> Any:
    from transformers import AutoConfig

    try:
        with _quiet_transformers():
            return AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                              trust_remote_code=trusted)
    except Exception as exc:
        model_type = raw.get("model_type")
        if model_type is None:
            problem = f"{config_path} has no model_type"
            fix = "re-save the model with save_pretrained (it writes model_type)"
        elif "does not recognize this architecture" in str(exc):
            import transformers

            problem = (f"{config_path} names model type {model_type!r}, which transformers "
                       f"{transformers.__version__} does not know")
            fix = "upgrade transformers (pip install -U transformers), or check the model_type"
        else:
            problem = f"transformers cannot read {config_path}: {type(exc).__name__}: {one_line(exc)}"
            fix = "re-save the model with save_pretrained"
        raise CheckpointError(problem, fix) from exc


def _model_class(arch: str | None, raw: dict[str, Any], config: Any, config_path: Path,
                 transformers: Any, trusted: bool) -> tuple[Any, str | None]:
    """The class to build: ``--arch``, else ``architectures[0]``, else ``AutoModel``."""
    if arch is not None:
        name = arch.removeprefix("transformers:").strip()
        cls = getattr(transformers, name, None) if name.isidentifier() else None
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise ConfigError(
                f"--arch {arch!r} is not a transformers model class",
                "name one, e.g. --arch transformers:AutoModelForSequenceClassification or "
                f"--arch transformers:{(raw.get('architectures') or ['BertModel'])[0]}",
            )
        return cls, None
    names = raw.get("architectures") or []
    for name in names:
        cls = getattr(transformers, str(name), None)
        if cls is not None and hasattr(cls, "from_pretrained"):
            return cls, None
        if trusted and "auto_map" in raw:
            return transformers.AutoModel, None  # the repository's code defines the class
    if names:
        raise CheckpointError(
            f"{config_path} names architecture {names[0]!r}, which transformers "
            f"{transformers.__version__} does not have",
            "pick a class with --arch transformers:AutoModel (or another head), or upgrade transformers",
        )
    return transformers.AutoModel, (
        f"{config_path.name} names no architecture: built {type(config).__name__}'s base model "
        "(AutoModel); pick a head with --arch transformers:AutoModelFor...")


def _dtype(dtype: str | None) -> Any:
    if dtype is None:
        return None
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}",
                          "pass --dtype float32, float16 or bfloat16, or leave it out")
    import torch

    return getattr(torch, dtype)


def _loading_notes(info: dict[str, Any]) -> list[str]:
    """Say which weights the checkpoint did not provide: a scan of random weights misleads."""
    notes = []
    missing = [k for k in info.get("missing_keys") or () if "position_ids" not in k]
    if missing:
        shown = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
        notes.append(f"{len(missing)} weight(s) not in the checkpoint were initialised at random "
                     f"({shown}): units fed by them say nothing about the trained model")
    mismatched = info.get("mismatched_keys") or ()
    if mismatched:
        notes.append(f"{len(mismatched)} weight(s) had another shape in the checkpoint and were "
                     "initialised at random")
    unexpected = info.get("unexpected_keys") or ()
    if unexpected:
        notes.append(f"{len(unexpected)} weight(s) in the checkpoint are not used by this class "
                     "(another head?)")
    return notes


def _load_fix(exc: BaseException) -> str:
    text = str(exc)
    if "accelerate" in text:
        return "pip install accelerate (needed for --device-map), or leave --device-map out"
    if "device_map" in text:
        return "pass --device-map auto, balanced or sequential, or leave it out"
    if "size mismatch" in text or "shape" in text:
        return "check that config.json belongs to these weights"
    return "re-save the model with save_pretrained, or check that the weight files are complete"


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers logs loading reports at WARNING, and draws a progress bar per load;
    deadrelu turns what matters into notes and keeps stderr for its own output."""
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    level = logger.level
    bars = hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def refuse_pickled_transformers(path: Path, globals_: Any) -> None:
    """A whole ``torch.save``d transformers model: point at the directory route instead.

    Its pickle rebuilds the config object by calling code the safe loader does not
    allow; ``save_pretrained`` writes the same model as data that loads safely.
    """
    names = [g for g in globals_ if str(getattr(g, "module", "")).startswith("transformers.")]
    if not names:
        return
    model = next((g.name for g in names if not g.name.endswith("Config")), names[0].name)
    raise CheckpointError(
        f"{path} is a whole pickled transformers model ({model}), whose pickle rebuilds its "
        "config by calling transformers code, which the safe loader does not do",
        "save it with model.save_pretrained('model_dir') and scan the directory "
        "(deadrelu scan model_dir --data ...), or pass --trust-checkpoint if you trust the file",
    )
