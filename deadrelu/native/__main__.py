"""``python -m deadrelu.native [--rebuild]``: is the fused kernel in use here, and if not, why."""

from __future__ import annotations

import argparse
import sys

from deadrelu import native
from deadrelu.native.build import library_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deadrelu.native", description=__doc__)
    parser.add_argument("--rebuild", action="store_true",
                        help="delete the cached library (and any failed-build note) and build again")
    args = parser.parse_args(argv)
    path = library_path()
    if args.rebuild:
        for stale in (path, path.with_suffix(".failed")):
            stale.unlink(missing_ok=True)
    if native.needs_build():
        print("building the fused statistics kernel (once per machine) ...", file=sys.stderr)
    if native.ensure():
        print(f"fused kernel in use: {path}")
        return 0
    print(native.reason() or "fused kernel not in use")
    return 1


if __name__ == "__main__":
    sys.exit(main())
