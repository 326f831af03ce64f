"""The `wattshare` command: host daemon, neighbour's wallet, co-op tools and the demo.

Thin by design (DESIGN.md, "Layout"): it parses arguments, calls node/ledger/protocol
and renders with rich. Exit codes: 0 success, 1 a check or a request failed (an audit
found violations, a host refused), 2 bad arguments or missing set-up.
"""

from ._main import main

__all__ = ["main"]
