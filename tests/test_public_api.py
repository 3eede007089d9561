import deadrelu


def test_public_api_is_small_and_explicit():
    assert sorted(deadrelu.__all__) == sorted([
        "Collector", "DeadReluError", "DeadUnitsWarning", "Finding", "InsufficientDataWarning",
        "Monitor", "Report", "Severity", "Thresholds", "UnitState", "__version__", "merge_reports", "scan",
    ])
    for name in deadrelu.__all__:
        assert hasattr(deadrelu, name)
