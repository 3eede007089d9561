"""deadrelu's own JSON Schemas (``deadrelu/schemas``) against real outputs.

The autouse fixture in ``conftest.py`` validates every document the suite renders;
these tests make sure each shipped schema is itself valid, is packaged, and that the
sample models' scan and check outputs (written by the CLI in a subprocess, where the
fixture cannot see) pass it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import schemas

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
LOAD = ["--arch", f"{SM / 'models.py'}:DigitsMLP", "--data", str(SM / "data" / "digits_test.npy")]


def test_every_shipped_schema_is_a_valid_json_schema_and_packaged():
    import jsonschema

    found = schemas.deadrelu_schemas()
    assert {"check", "report"} <= set(found)
    for path in found.values():
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validators.validator_for(schema).check_schema(schema)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"deadrelu.schemas" = ["*.json"]' in pyproject


@pytest.mark.skipif(not (SM / "series" / "step_400.pt").exists(), reason="sample models not built")
@pytest.mark.parametrize(("args", "schema"), [
    (["scan", SM / "mlp_high_lr.pt", *LOAD, "--format", "json"], "report"),
    (["check", SM / "series" / "step_400.pt", *LOAD, "--max-dead", "20%", "--format", "json"],
     "check"),
    (["check", SM / "missing.pt", *LOAD, "--format", "json"], "check"),
])
def test_cli_json_outputs_match_their_schema(args, schema):
    done = subprocess.run([sys.executable, "-m", "deadrelu", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, check=False, cwd=ROOT, timeout=300)
    assert done.returncode in (0, 1, 2), done.stderr
    doc = schemas.validate_json(schema, done.stdout)
    assert doc["schema_version"] == 1


def test_the_check_schema_rejects_what_it_should():
    good = {"schema_version": 1, "tool": "deadrelu", "version": "0", "model": "m.pt",
            "baseline": None, "error": "x", "passed": False, "failed": 0, "gates": [],
            "results": [], "notes": [], "summary": None, "findings": []}
    schemas.validate_json("check", json.dumps(good))
    for broken in ({**good, "schema_version": 2}, {k: v for k, v in good.items() if k != "error"},
                   {**good, "passed": "no"}):
        with pytest.raises(AssertionError):
            schemas.validate_json("check", json.dumps(broken))
    with pytest.raises(AssertionError, match="not JSON"):
        schemas.validate_json("check", json.dumps({**good, "failed": float("nan")}))
