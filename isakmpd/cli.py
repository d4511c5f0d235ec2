"""The ``isakmpd`` console script."""

from __future__ import annotations

import sys

from isakmpd.tap import NOT_AVAILABLE


def main(argv: list[str] | None = None) -> int:
    """Run the daemon; until it exists, say so and exit 1."""
    print(NOT_AVAILABLE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
