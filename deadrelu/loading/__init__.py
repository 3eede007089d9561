"""Loading layer: model files, data sources, and the check that they fit together.

Library code only (the CLI is a thin shell over it). Heavy modules (torch,
Pillow, pandas, pyarrow, safetensors) are imported inside the functions that
need them, so importing this package stays cheap.
"""

from __future__ import annotations

from deadrelu.loading.checkpoint import FORMATS, LoadedModel, build_arch, load_model, load_weights
from deadrelu.loading.data import open_data, parse_image_size, parse_normalize
from deadrelu.loading.fit import check_fit, suggest_channels
from deadrelu.loading.model_and_data import load_model_and_data
from deadrelu.loading.options import LoadOptions
from deadrelu.loading.source import Batch, DataSource

__all__ = [
    "FORMATS",
    "Batch",
    "DataSource",
    "LoadOptions",
    "LoadedModel",
    "build_arch",
    "check_fit",
    "load_model",
    "load_model_and_data",
    "load_weights",
    "open_data",
    "parse_image_size",
    "parse_normalize",
    "suggest_channels",
]
