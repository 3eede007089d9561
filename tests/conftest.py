import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["native", "eager"])
def stats_path(request):
    """Run a test once with the fused CPU kernel and once with the eager statistics.

    Both must match the brute-force reference; the native run is skipped where the
    kernel cannot be built (no C++ compiler).
    """
    from deadrelu import native

    if request.param == "eager":
        with native.disabled():
            yield request.param
        return
    if not native.available():
        pytest.skip(f"fused kernel not available here: {native.reason()}")
    yield request.param
