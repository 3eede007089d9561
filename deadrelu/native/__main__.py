"""``python -m deadrelu.native [--rebuild]``: build the fused kernel now and say whether it is in use."""

from __future__ import annotations

import argparse
import sys

from deadrelu import native
from deadrelu.native import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deadrelu.native", description=__doc__)
    parser.add_argument("--rebuild", action="store_true",
                        help="delete the cached library (and any failed-build note) and build again")
    args = parser.parse_args(argv)
    path = build.library_path()
    if args.rebuild:
        for stale in (path, build.marker(path)):
            stale.unlink(missing_ok=True)
    if native.ensure(wait=True):
        print(f"fused kernel in use: {path}")
        return 0
    print(native.reason() or "fused kernel not in use")
    return 1


if __name__ == "__main__":
    sys.exit(main())
