"""Model file + data spec → ``(LoadedModel, DataSource)``, checked to fit before any forward.

The decisions that tie the data to the model live here, not in the CLI: image
channels from the model's first conv layer, a model directory's tokenizer,
preprocessor (crop, mean/std) and audio feature extractor, the device a model
directory is materialised on, and the refusal of TorchScript archives before any
torch loader runs. :func:`deadrelu.scan` and every command that loads a model share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.loading.checkpoint import LoadedModel
    from deadrelu.loading.options import LoadOptions
    from deadrelu.loading.source import DataSource


def load_model_of(opts: LoadOptions) -> LoadedModel:
    """Load ``opts.model`` as :func:`load_model_and_data` does (TorchScript refused from its
    content, ``--dtype`` applied), without opening the data: ``track`` loads each
    ``checkpoint-*`` model directory of a run this way.

    Raises:
        CheckpointError, ConfigError, ModelError: one-line, user-fixable problems.
    """
    from deadrelu.loading.checkpoint import load_model, sniff_format
    from deadrelu.loading.hf import hf_directory

    # Decided from the file's content, before any torch loader runs: loading a
    # TorchScript archive runs its code, and it could not be scanned anyway.
    if hf_directory(opts.model) is None and sniff_format(opts.model) == "torchscript":
        from deadrelu.errors import ModelError

        raise ModelError(
            f"{opts.model} is a TorchScript archive: it runs compiled graph code with no Python "
            "forward to observe, so its activations cannot be seen (deadrelu did not load it: "
            "loading TorchScript runs code from the file)",
            "scan the original nn.Module checkpoint (or a torch.export .pt2 program) instead",
        )
    loaded = load_model(
        opts.model, arch=opts.arch, arch_kwargs=opts.arch_kwargs,
        import_paths=opts.import_paths, trust_checkpoint=opts.trust_checkpoint,
        dtype=opts.dtype, device_map=_device_map(opts),
    )
    if opts.dtype is not None and loaded.format != "transformers":
        from deadrelu.loading.hf import _dtype

        loaded.model.to(_dtype(opts.dtype))
    return loaded


def load_model_and_data(opts: LoadOptions) -> tuple[LoadedModel, DataSource]:
    """Load the model, open the data, and check they fit, before any forward pass.

    Image channels default to the model's first conv layer's input channels, so a
    greyscale CNN reads greyscale PNGs without ``--channels 1``.

    Raises:
        CheckpointError, DataError, ConfigError: one-line, user-fixable problems.
    """
    loaded = load_model_of(opts)
    return loaded, open_data_for(opts, loaded)


def open_data_for(opts: LoadOptions, loaded: LoadedModel) -> DataSource:
    """Open ``opts.data`` for the model ``loaded`` from ``opts.model`` and check they fit:
    image channels, a model directory's tokenizer, preprocessor and feature extractor
    come from that model. ``track`` calls it again for a ``checkpoint-*`` directory
    whose tokenizer differs from the previous checkpoint's.

    Raises:
        DataError, ConfigError: one-line, user-fixable problems.
    """
    from deadrelu.loading.data import open_data
    from deadrelu.loading.fit import check_fit

    channels = opts.channels
    if channels is None and _looks_like_images(opts.data):
        channels = _suggest_image_channels(loaded.model, Path(opts.data))
    tokenizer, model_limit = _tokenizer_for(opts, loaded)
    transform, normalize = _image_transform(opts, loaded)
    extractor = _feature_extractor(opts, loaded)
    source = open_data(
        opts.data, batch_size=opts.batch_size, limit=opts.limit, image_size=opts.image_size,
        normalize=normalize, target=opts.target, channels=channels,
        import_paths=opts.import_paths, tokenizer=tokenizer, text_column=opts.text_column,
        max_length=opts.max_length, model_max_length=model_limit, transform=transform,
        feature_extractor=extractor,
    )
    if source.sample_shape is not None:
        check_fit(loaded.model, source.sample_shape, opts.batch_size, source.num_samples)
    return source


def _device_map(opts: LoadOptions) -> Any:
    """Where a model directory's weights are materialised: ``--device-map``, else the
    scan's device (so a GPU scan never holds a CPU copy first), else the CPU."""
    if opts.device_map is not None:
        return opts.device_map
    if opts.device in (None, "auto"):
        import torch

        return "cuda" if opts.device == "auto" and torch.cuda.is_available() else None
    return opts.device


def _feature_extractor(opts: LoadOptions, loaded: LoadedModel) -> Any:
    """A model directory's audio feature extractor, for ``.wav``/``.flac`` ``--data``."""
    from deadrelu.loading.audio import AUDIO_SUFFIXES, list_audio, load_feature_extractor

    data = Path(opts.data)
    is_audio = (data.suffix.lower() in AUDIO_SUFFIXES if data.is_file()
                else data.is_dir() and not _looks_like_images(opts.data) and bool(list_audio(data)))
    if loaded.format != "transformers" or not is_audio:
        return None
    from deadrelu.loading.hf import hf_directory

    folder = hf_directory(opts.model)
    return load_feature_extractor(folder) if folder is not None else None


def _image_transform(opts: LoadOptions, loaded: LoadedModel) -> tuple[Any, str | None]:
    """The eval transform for image ``--data`` and the normalisation to use with it.

    ``--center-crop`` wins; else a model directory's ``preprocessor_config.json``
    (size, crop, and its mean/std unless ``--normalize`` is given), unless
    ``--image-size`` asks to squash instead; else none (the flags as they are).
    """
    from deadrelu.loading.preprocess import from_preprocessor_config, parse_crop

    normalize = opts.normalize
    if opts.center_crop is not None:
        return parse_crop(opts.center_crop), normalize
    if loaded.format != "transformers" or opts.image_size is not None \
            or not _looks_like_images(opts.data):
        return None, normalize
    from deadrelu.loading.hf import hf_directory

    folder = hf_directory(opts.model)
    transform = from_preprocessor_config(folder) if folder is not None else None
    if transform is not None and normalize in (None, "none") and not opts.normalize_given:
        normalize = transform.normalize_spec() or normalize
    return transform, normalize


def _tokenizer_for(opts: LoadOptions, loaded: LoadedModel) -> tuple[Any, int | None]:
    """The tokenizer for text ``--data`` (``--tokenizer``, else the model directory's own),
    and the model's sequence limit; ``(None, None)`` when the data is not text."""
    from deadrelu.loading.text import load_tokenizer

    source = tokenizer_source(opts, loaded)
    if source is None:
        return None, None  # not text, or open_data says that text needs a tokenizer
    config = getattr(loaded.model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return load_tokenizer(source, trust_checkpoint=opts.trust_checkpoint), limit


def tokenizer_source(opts: LoadOptions, loaded: LoadedModel) -> Path | None:
    """The directory whose tokenizer reads text ``--data``: ``--tokenizer``, else the model
    directory's own; ``None`` when the data is not text or no tokenizer is at hand.
    ``track`` compares it across a run's checkpoints (:func:`~deadrelu.loading.text.tokenizer_fingerprint`)."""
    from deadrelu.loading.hf import hf_directory
    from deadrelu.loading.text import is_saved_dataset, is_text_file

    data = Path(opts.data)
    is_dir_model = loaded.format == "transformers"
    known = opts.tokenizer is not None or is_dir_model
    if not (data.is_file() or is_saved_dataset(data)) or not is_text_file(
            data, tokenizer_known=known, text_column=opts.text_column):
        return None
    return opts.tokenizer or (hf_directory(opts.model) if is_dir_model else None)


def _looks_like_images(spec: str) -> bool:
    """Whether ``--data`` points at images (so a channel count applies)."""
    return _first_image(Path(spec)) is not None


def _first_image(path: Path) -> Path | None:
    from deadrelu.loading.images import IMAGE_SUFFIXES

    if path.is_file():
        return path if path.suffix.lower() in IMAGE_SUFFIXES else None
    if path.is_dir():
        for sub in (path, *sorted(p for p in path.iterdir() if p.is_dir())[:3]):
            for entry in sorted(sub.iterdir()):
                if (entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")
                        and entry.is_file()):  # never open a FIFO: open_data refuses it
                    return entry
    return None


def _suggest_image_channels(model: Any, data: Path) -> int | None:
    """Channels to read images with when ``--channels`` is not given.

    The model's first conv layer decides when it has one (a greyscale CNN reads
    greyscale, an RGB CNN reads RGB even from greyscale files). Otherwise (an MLP
    on flattened pixels) the images' own mode decides: greyscale files stay one
    channel, as torchvision's ``ToTensor`` would leave them.
    """
    from deadrelu.loading.fit import suggest_channels

    suggested = suggest_channels(model)
    if suggested is not None:
        # open_data reads only 1, 3 or 4 channels; anything else is for check_fit to judge.
        return suggested if suggested in (1, 3, 4) else None
    first = _first_image(data)
    if first is None:
        return None
    try:
        from PIL import Image

        with Image.open(first) as image:
            mode = image.mode
    except Exception:  # unreadable or no Pillow: open_data reports it properly
        return None
    return 1 if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F") else None
