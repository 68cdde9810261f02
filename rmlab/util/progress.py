"""Progress bars that suit both a terminal and a SLURM log file."""

from __future__ import annotations

import sys


def progress(iterable=None, *, desc: str, enabled: bool = True, total: int | None = None, initial: int = 0):
    """A tqdm bar: redrawn often on a terminal; in a log file (not a TTY) one line every 30 s, not a flood."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        initial=initial,
        disable=not enabled,
        dynamic_ncols=interactive,
        mininterval=0.1 if interactive else 30.0,
    )
