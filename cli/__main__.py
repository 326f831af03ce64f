"""`python -m wattshare.cli`: the `wattshare` command (how the demo starts its daemons)."""

from ._main import main

main()
