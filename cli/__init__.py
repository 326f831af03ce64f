"""The `wattshare` command: host daemon, neighbour's wallet, co-op tools and the demo.

Thin by design (DESIGN.md, "Layout"): it parses arguments, calls node/ledger/protocol
and renders with rich. Exit codes: 0 success, 1 a check failed (e.g. audit), 2 usage
error or a feature this build does not have yet.
"""

from ._main import main

__all__ = ["main"]
