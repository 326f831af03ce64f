"""The node daemon (DESIGN.md, "Streams" onwards): trio + libp2p, DHT, protocols, OCPP.

Depends on `wattshare.ledger` and `wattshare.protocol`, never the other way.
"""

from ._addresses import home_address
from ._admin import AdminError, admin_call, node_commands, serve_admin
from ._ads import AD_LIFETIME, AD_PROTOCOL, AdBoard, fetch_ads, find_chargers
from ._bookings import BOOKING_PROTOCOL, Approval, BookingDesk, BookingRejected, request_booking, request_cancel
from ._central import CentralSystem, ChargerOffline, OcppEndpoint, basic_auth
from ._charge import Charging, charge
from ._clock import Clock
from ._coop import CoopOffice, CoopRefused, parse_member
from ._dialback import DIAL_BACK_PROTOCOL
from ._errors import DisputeRefused, NodeError, SessionLost
from ._framing import FrameError, FrameStream, StreamEnded, causes, exception_leaves
from ._host import cell_key, cell_of, make_host, peer_of, peer_of_address
from ._node import Node
from ._sessions import SESSION_PROTOCOL, SessionDesk
from ._store import NodeStore
from ._sync import SYNC_PROTOCOL, LedgerSync
from ._tls import client_context, fingerprint, make_certificate, server_context
from ._wallbox import Curve, Wallbox
from ._witness import CHECKPOINT_EVERY, charter_entry, witness_feeds

__all__ = [
    "AD_LIFETIME",
    "AD_PROTOCOL",
    "DIAL_BACK_PROTOCOL",
    "AdminError",
    "AdBoard",
    "Approval",
    "BOOKING_PROTOCOL",
    "BookingDesk",
    "BookingRejected",
    "CentralSystem",
    "ChargerOffline",
    "Charging",
    "Clock",
    "CoopOffice",
    "CoopRefused",
    "CHECKPOINT_EVERY",
    "Curve",
    "DisputeRefused",
    "FrameError",
    "FrameStream",
    "LedgerSync",
    "Node",
    "NodeError",
    "OcppEndpoint",
    "SYNC_PROTOCOL",
    "NodeStore",
    "SESSION_PROTOCOL",
    "SessionLost",
    "SessionDesk",
    "StreamEnded",
    "Wallbox",
    "admin_call",
    "basic_auth",
    "causes",
    "cell_key",
    "cell_of",
    "exception_leaves",
    "charge",
    "charter_entry",
    "fetch_ads",
    "find_chargers",
    "make_host",
    "parse_member",
    "peer_of",
    "peer_of_address",
    "request_booking",
    "request_cancel",
    "serve_admin",
    "witness_feeds",
    "client_context",
    "fingerprint",
    "home_address",
    "make_certificate",
    "node_commands",
    "server_context",
]
