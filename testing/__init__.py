"""Test scaffolding that ships with wattshare, as `trio.testing` ships with trio.

- fault hooks a running node can be told to suffer, for the chaos run and the tests:
  link faults (`_links`), a full disk and the admin commands of both (`_faults`);
- sample neighbourhoods: deterministic, fully signed ledgers (`_sample`).

The production node never imports this package; a daemon does only when started with
`--fault-hooks`.
"""

from ._faults import FaultHooks, FullDisk
from ._links import LinkFaults
from ._sample import EPOCH, TZ, SampleWorld, off_peak_tariff

__all__ = ["EPOCH", "TZ", "FaultHooks", "FullDisk", "LinkFaults", "SampleWorld", "off_peak_tariff"]
