"""What to load: :class:`LoadOptions`, the model file and the data, and how to read them.

One value instead of a dozen keyword arguments: the CLI builds it once from its
flags (:func:`deadrelu.cli.settings.load_options`) and every command that loads a
model (``scan``, ``check``, ``track``, ``prune``) hands it on whole to
:func:`deadrelu.loading.load_model_and_data`. Library code can build it directly.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadOptions:
    """What to load: the model file and how to build it, the data and how to read it.

    Attributes:
        model: model file or Hugging Face model directory.
        data: the ``--data`` spec (a path, or ``module:function`` / ``file.py:function``).
        arch, arch_kwargs: the class or factory for weights-only files, and its arguments.
        import_paths: folders searched first for the model's code.
        trust_checkpoint: use torch's unchecked loaders (runs code from the file).
        batch_size, limit: samples per forward, and at most this many samples.
        image_size, center_crop, normalize, channels: how images are read.
        target: label column of a table, left out of the inputs.
        config_file: the ``[tool.deadrelu]`` file the settings came from (an input).
        tokenizer, text_column, max_length: how text is read.
        dtype, device_map, device: how and where a model's weights are materialised.
        normalize_given: ``normalize`` was asked for explicitly (even as ``"none"``), so
            a model directory's preprocessor config does not replace it.
    """

    model: Path
    data: str
    arch: str | None = None
    arch_kwargs: Mapping[str, Any] | None = None
    import_paths: tuple[Path, ...] = ()
    trust_checkpoint: bool = False
    batch_size: int = 64
    limit: int | None = None
    image_size: str | None = None
    normalize: str = "none"
    target: str | None = None
    channels: int | None = None
    config_file: Path | None = None
    tokenizer: Path | None = None
    text_column: str | None = None
    max_length: int | None = None
    dtype: str | None = None
    device_map: str | None = None
    device: str | None = None
    center_crop: str | None = None
    normalize_given: bool = False

    def input_paths(self) -> list[Path]:
        """Files and folders this run reads (to refuse writing output over them)."""
        paths = [self.model]
        head, sep, _ = self.data.rpartition(":")
        data = Path(head) if sep and head.endswith(".py") else Path(self.data)
        paths.append(data)
        if self.arch:  # path/to/file.py:Class: the user's model code
            arch_file, sep, _ = self.arch.rpartition(":")
            if sep and arch_file.endswith(".py"):
                paths.append(Path(arch_file))
        paths.extend(Path(p) for p in self.import_paths)  # folders of model code
        if self.tokenizer is not None:
            paths.append(self.tokenizer)
        if self.config_file is not None:
            paths.append(self.config_file)
        return paths
