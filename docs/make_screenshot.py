"""Regenerate docs/images/report.svg, the picture of the terminal report in the README.

Run from the repository root: ``python docs/make_screenshot.py``.
:func:`sample_report` is shared with ``make_html_screenshot.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from rich.console import Console

from deadrelu.loading import LoadOptions, load_model_and_data
from deadrelu.report import Report
from deadrelu.scanning import scan

ROOT = Path(__file__).resolve().parent.parent


def sample_report() -> Report:
    """The report of the sample model whose learning-rate spike killed units, as
    ``deadrelu scan sample_models/mlp_high_lr.pt`` makes it (without its warnings)."""
    opts = LoadOptions(
        model=ROOT / "sample_models/mlp_high_lr.pt",
        data=str(ROOT / "sample_models/data/digits_test.npy"),
        arch=str(ROOT / "sample_models/models.py:DigitsMLP"),
    )
    loaded, source = load_model_and_data(opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scan(loaded.model, source, model_name=loaded.description,
                    data_name=source.description)


def main() -> None:
    report = sample_report()
    console = Console(record=True, width=100, force_terminal=True, color_system="truecolor")
    console.print("$ deadrelu scan sample_models/mlp_high_lr.pt --arch sample_models/models.py:DigitsMLP "
                  "--data sample_models/data/digits_test.npy", style="bold", highlight=False)
    console.print(report)
    out = ROOT / "docs/images/report.svg"
    console.save_svg(str(out), title="deadrelu scan")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
