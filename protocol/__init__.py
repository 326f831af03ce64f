"""wattshare's sans-IO protocol core: identities, canonical signed messages, tariffs, machines.

No trio, no sockets, no sqlite here (a test enforces it): feed it values and bytes,
take values and bytes out. Everything below is re-exported from private modules:

- identities and sealing (`_identity`), canonical CBOR (`_codec`), records (`_record`)
  and signed envelopes (`_envelope`);
- the charger ad (`_ad`), OCPI-shaped tariffs (`_tariff`) and pricing (`_pricing`);
- booking and session messages (`_messages`) and their state machines (`_booking`,
  `_session`), with errors split by whose fault they are (`_errors`);
- charger search over fetched ads: filtering, price estimates, ranking (`_search`);
- the unsigned frames of the node's stream protocols, one tagged union (`_wire`);
- geohash and distance helpers as `geo`.
"""

from . import _geo as geo
from ._ad import AvailabilityException, BookingTerms, ChargerAd, Connector, WeeklyWindow
from ._booking import BookingMachine, BookingState
from ._clock import wall_time
from ._codec import MAX_MESSAGE_SIZE
from ._codec import decode as decode_cbor
from ._codec import encode as encode_cbor
from ._envelope import DOMAIN, Signed, sign, signing_input, vouched_by
from ._errors import (
    DecodeError,
    IllegalTransition,
    InvalidValue,
    LocalProtocolError,
    ProtocolError,
    Reason,
    RemoteProtocolError,
    SignatureError,
)
from ._identity import Identity, KeyFileError, peer_id, public_key_from_peer_id, seal_to, write_private
from ._machine import Role
from ._messages import (
    GENESIS,
    AccessInfo,
    Booking,
    BookingConfirmation,
    BookingRejection,
    BookingRequest,
    Cancel,
    Dispute,
    MeterReceipt,
    NoShow,
    Settlement,
    SettlementAck,
    SettlementEvent,
    StartRequest,
    StopRequest,
    open_access,
    seal_access,
)
from ._pricing import LineKind, MeterReading, Price, PriceLine, price
from ._record import MESSAGE_TYPES, Message, Record, message, record, require, require_range, require_size
from ._search import Query, Result, estimate, forged, newest, search
from ._session import (
    FINAL_READING_MARGIN,
    SETTLE_MARGIN,
    SessionMachine,
    SessionState,
    check_receipt,
    check_session,
    check_settlement,
    settlement_price,
)
from ._wire import (
    FRAMES,
    AdList,
    AdRequest,
    BookingAnswer,
    BookingOffer,
    CancelAnswer,
    CancelOffer,
    ErrorReply,
    SessionAnswer,
    SessionOffer,
    SessionUpdate,
    StopOffer,
    decode_frame,
    encode_frame,
    frame_kind,
)
from ._tariff import (
    PRICE_SCALE,
    DayOfWeek,
    Dimension,
    PriceComponent,
    Tariff,
    TariffElement,
    TariffRestrictions,
    format_amount,
    minor_digits,
)

__all__ = [
    "DOMAIN",
    "FINAL_READING_MARGIN",
    "GENESIS",
    "MAX_MESSAGE_SIZE",
    "SETTLE_MARGIN",
    "MESSAGE_TYPES",
    "PRICE_SCALE",
    "FRAMES",
    "AccessInfo",
    "AdList",
    "AdRequest",
    "AvailabilityException",
    "Booking",
    "BookingAnswer",
    "BookingConfirmation",
    "BookingMachine",
    "BookingOffer",
    "BookingRejection",
    "BookingRequest",
    "BookingState",
    "BookingTerms",
    "Cancel",
    "CancelAnswer",
    "CancelOffer",
    "ChargerAd",
    "Connector",
    "DayOfWeek",
    "DecodeError",
    "Dimension",
    "Dispute",
    "ErrorReply",
    "Identity",
    "IllegalTransition",
    "InvalidValue",
    "KeyFileError",
    "LineKind",
    "LocalProtocolError",
    "Message",
    "MeterReading",
    "MeterReceipt",
    "NoShow",
    "Price",
    "Query",
    "PriceComponent",
    "PriceLine",
    "ProtocolError",
    "Reason",
    "Record",
    "RemoteProtocolError",
    "Result",
    "Role",
    "SessionMachine",
    "SessionState",
    "SessionAnswer",
    "SessionOffer",
    "SessionUpdate",
    "Settlement",
    "SettlementAck",
    "SettlementEvent",
    "SignatureError",
    "Signed",
    "StartRequest",
    "StopOffer",
    "StopRequest",
    "Tariff",
    "TariffElement",
    "TariffRestrictions",
    "WeeklyWindow",
    "check_receipt",
    "check_session",
    "check_settlement",
    "decode_cbor",
    "decode_frame",
    "encode_cbor",
    "encode_frame",
    "estimate",
    "format_amount",
    "frame_kind",
    "geo",
    "message",
    "minor_digits",
    "forged",
    "newest",
    "open_access",
    "peer_id",
    "price",
    "public_key_from_peer_id",
    "record",
    "require",
    "require_range",
    "require_size",
    "seal_access",
    "seal_to",
    "search",
    "settlement_price",
    "sign",
    "signing_input",
    "vouched_by",
    "wall_time",
    "write_private",
]
