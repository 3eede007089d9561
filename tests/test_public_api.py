import deadrelu


def test_public_api_is_small_and_explicit():
    assert sorted(deadrelu.__all__) == sorted([
        "Collector", "DeadReluError", "DeadUnitsWarning", "Finding", "InsufficientDataWarning",
        "KeptUnits", "Monitor", "PruneResult", "RecycleResult", "RemovedUnits", "Report", "Severity", "SwapResult", "Thresholds",
        "UnitState", "__version__", "load_pruned", "merge_reports", "prune", "recycle", "scan", "swap_activations",
    ])
    for name in deadrelu.__all__:
        assert hasattr(deadrelu, name)
