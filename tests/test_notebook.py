"""A real Jupyter kernel runs a small notebook: the report shows as HTML, never a traceback.

Executed with nbclient and ipykernel (the ``dev`` extra); skipped where they are missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]

CELLS = [
    f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    "import warnings; warnings.simplefilter('ignore')\n"
    "import torch, deadrelu\n"
    "from torch import nn\n"
    "torch.manual_seed(0)\n"
    "net = nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 3))\n"
    "with torch.no_grad():\n"
    "    net[0].bias[:] = 2.0\n"
    "    net[0].bias[:5] = -1e3\n"
    "x = torch.randn(400, 6)",
    # progress=True: an HTML bar in the cell; the report displays as its _repr_html_
    "report = deadrelu.scan(net, x, batch_size=50, model_name='planted', progress=True)\n"
    "report",
    "print(repr(report))",
    "with deadrelu.Monitor(net, every=1) as monitor:\n"
    "    for _ in range(3):\n"
    "        net(torch.randn(64, 6)); monitor.report()\n"
    "monitor.plot()",
]


def test_notebook_shows_the_report_the_bar_and_the_plot(tmp_path, monkeypatch):
    # a kernel spec of our own: the kernel is this interpreter, whatever "python3" means here
    spec = tmp_path / "jupyter" / "kernels" / "deadrelu-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "deadrelu test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="deadrelu-test",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [cell.outputs for cell in nb.cells]
    for cell_outputs in outputs:
        assert not [o for o in cell_outputs if o.output_type == "error"], cell_outputs
        for o in cell_outputs:
            assert "Traceback" not in str(o.get("text", ""))
    scan_cell = outputs[1]
    shown = [o for o in scan_cell if o.output_type == "execute_result"]
    assert len(shown) == 1
    html = shown[0].data["text/html"]
    assert "chart overview" in html and "Findings" in html
    assert "1 of 1 layer has dead units: 5 of 20 units" in html
    assert shown[0].data["text/plain"] == "<Report planted: 400 samples, 1 sites, 5 of 20 units dead>"
    bars = [o for o in scan_cell if o.output_type == "display_data"
            and "<progress" in o.data.get("text/html", "")]
    assert len(bars) == 1 and "scanned 400 of 400 samples" in bars[0].data["text/html"]
    printed = "".join(o.get("text", "") for o in outputs[2] if o.output_type == "stream")
    assert printed.strip() == "<Report planted: 400 samples, 1 sites, 5 of 20 units dead>"
    plot = [o for o in outputs[3] if o.output_type in ("execute_result", "display_data")]
    assert plot and "image/png" in plot[0].data
