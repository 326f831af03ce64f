"""The node daemon (DESIGN.md, "Streams" onwards): trio + libp2p, DHT, protocols, OCPP.

Depends on `wattshare.ledger` and `wattshare.protocol`, never the other way.
"""

from ._ads import AD_PROTOCOL, AdBoard, fetch_ads, find_chargers
from ._framing import FrameError, FrameStream, StreamEnded
from ._host import cell_key, make_host
from ._node import Node

__all__ = [
    "AD_PROTOCOL",
    "AdBoard",
    "FrameError",
    "FrameStream",
    "Node",
    "StreamEnded",
    "cell_key",
    "fetch_ads",
    "find_chargers",
    "make_host",
]
