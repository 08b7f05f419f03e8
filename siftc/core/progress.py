"""Per-pass progress on a terminal: a compile that takes more than a moment says where it is.

A pass-manager instrument that draws a tqdm bar of the pipeline's passes (the current pass's name
as its description) on stderr, only when stderr is a terminal and ``CI`` is not set: logs, CI
output and captured test output never see it. ``SIFTC_PROGRESS=0`` turns it off, ``=1`` forces it.
"""
from __future__ import annotations

import os
import sys


def wanted() -> bool:
    forced = os.environ.get("SIFTC_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false", "no")
    return sys.stderr.isatty() and not os.environ.get("CI")


class PassProgress:
    def __init__(self, total: int):
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc="siftc", unit="pass", leave=False, file=sys.stderr,
                        delay=1.0)          # shown only once a compile has taken a second

    def before(self, item, gm, ctx) -> None:
        self.bar.set_description(f"siftc {item.name}")

    def after(self, item, result, ctx, seconds) -> None:
        self.bar.update(1)
        if self.bar.n >= self.bar.total:
            self.bar.close()
