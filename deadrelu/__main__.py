"""``python -m deadrelu``: the same as the ``deadrelu`` command."""

from deadrelu.cli import main

if __name__ == "__main__":
    main()
