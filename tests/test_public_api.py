import deadrelu


def test_public_api_is_small_and_explicit():
    assert sorted(deadrelu.__all__) == sorted([
        "Collector", "DeadReluError", "DeadUnitsWarning", "Finding", "InsufficientDataWarning",
        "KeptUnits", "Monitor", "PruneResult", "RecycleResult", "RemovedUnits", "Report", "Severity", "SwapResult", "Thresholds",
        "UnitState", "__version__", "load_pruned", "merge_reports", "prune", "recycle", "scan", "swap_activations",
    ])
    for name in deadrelu.__all__:
        assert hasattr(deadrelu, name)


def test_dir_shows_the_public_api_not_the_modules_helpers():
    import deadrelu

    deadrelu.Report  # noqa: B018  (loads a submodule, which must not show up either)
    names = [n for n in dir(deadrelu) if not n.startswith("__")]
    assert names == sorted(n for n in deadrelu.__all__ if not n.startswith("__"))
    for helper in ("Any", "TYPE_CHECKING", "annotations", "importlib", "report"):
        assert helper not in dir(deadrelu)
    assert "__version__" in dir(deadrelu)


def test_report_tables_are_copies():
    """Changing the DataFrame a caller got never changes what the report returns next."""
    import torch
    from torch import nn

    import deadrelu

    report = deadrelu.scan(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.randn(400, 3))
    layers = report.layers
    layers["dead"] = 999
    layers["mine"] = 1
    assert "mine" not in report.layers and (report.layers["dead"] != 999).all()
    units = report.units
    units.loc[:, "state"] = "changed"
    assert (report.units["state"] != "changed").all()
    assert report.layers is not report.layers
