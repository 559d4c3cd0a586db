"""``python -m porter_bundle.config [--write docs/configuration.md]``: the settings table (see
:mod:`.table`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from porter_bundle.config.table import markdown_table, write_table


def main() -> int:
    """Prints the table, or writes it into a Markdown file between its markers."""
    parser = argparse.ArgumentParser(prog="python -m porter_bundle.config", description=__doc__)
    parser.add_argument("--write", metavar="FILE", type=Path, help="update this file in place")
    args = parser.parse_args()
    if args.write is None:
        sys.stdout.write(markdown_table())
    elif write_table(args.write):
        print(f"{args.write}: settings table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
