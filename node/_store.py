"""The node's own SQLite state: its ads and the bookings it is party to.

Theory of operation (DESIGN.md, "Booking": atomic reservation; "Nothing is lost"):

- `ads(charger_id, envelope)`: the host's current signed ads, reloaded at start.
- `bookings(booking_id, charger_id, host, driver, start, end, spend_cap, state,
  request, answer, updated, access, closed_by)`: every booking this node took part in,
  with the exact signed request, the host's signed answer (confirmation or rejection),
  the access info sealed to the driver, and the signed cancel or no-show that closed it;
  `mark` moves one to a new state with what moved it.
- `peers(address, seen)`: full addresses of peers joined before, to rejoin after a restart.
- `found(rank, envelope)`: a driver's last search results, signed ads, best first.
- `sessions(booking_id, charger_id, transaction_id, meter_start, start, stop,
  settlement, answer)` and `receipts(booking_id, seq, envelope)`: the charging
  sessions (the host's, and a driver's copy), each signed message stored before it is
  acted on (DESIGN.md, "Session and metering": nothing is lost when a node crashes),
  each step of a session in one transaction (`keep_session`); they come back as a
  `StoredSession` with the ordered log its machine took. Transaction ids are OCPP's and
  never reused.
- `reserve` is the slot lock: in one IMMEDIATE transaction it checks that no booking of
  the charger in a holding state (pending, confirmed, started) overlaps the window and
  inserts the new one. SQLite serialises writers, so two requests for one slot, from
  one process or several, can never both hold it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from wattshare.ledger import atomic
from wattshare.protocol import (
    Booking,
    BookingConfirmation,
    BookingRejection,
    BookingRequest,
    BookingState,
    Cancel,
    ChargerAd,
    DecodeError,
    Message,
    MeterReceipt,
    NoShow,
    Settlement,
    SettlementEvent,
    Signed,
    StartRequest,
    StopRequest,
    peer_id,
    wall_time,
)

HOLDING = (BookingState.PENDING, BookingState.CONFIRMED, BookingState.STARTED)
_HOLDING_SQL = f"state IN ({', '.join('?' * len(HOLDING))})"
A = TypeVar("A", BookingConfirmation, BookingRejection)
_SESSION_FIELDS = "booking_id, charger_id, transaction_id, meter_start, start, stop, settlement, answer"
_SESSION_COLUMNS = ((StopRequest, "stop"), (Settlement, "settlement"), (SettlementEvent, "answer"))


@dataclass(frozen=True)
class StoredSession:
    """A session as the store keeps it: `log` is every message its machine took, in order."""

    booking_id: bytes
    charger_id: str
    start: Signed[StartRequest]
    transaction: tuple[int, int] | None  # (OCPP transaction id, meter register at its start)
    log: tuple[Signed[Message], ...]

    @property
    def receipts(self) -> list[Signed[MeterReceipt]]:
        return [s for s in self.log if isinstance(s.message, MeterReceipt)]  # type: ignore[misc]

    @property
    def settlement(self) -> Signed[Settlement] | None:
        return next((s for s in self.log if isinstance(s.message, Settlement)), None)  # type: ignore[return-value]

    @property
    def answer(self) -> Signed[SettlementEvent] | None:
        """The driver's ack or dispute of the settlement."""
        return next((s for s in self.log if isinstance(s.message, SettlementEvent)), None)  # type: ignore[return-value]


class NodeStore:
    def __init__(self, path: Path | str | None = None, clock: Callable[[], float] = wall_time) -> None:
        """The store at `path`, or in memory (a search-only node keeps nothing); `clock`
        (the node's) dates its rows."""
        self.clock = clock
        self.db = sqlite_utils.Database(Path(path)) if path is not None else sqlite_utils.Database(memory=True)
        self.db.conn.isolation_level = None
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db["ads"].create({"charger_id": str, "envelope": bytes}, pk="charger_id", if_not_exists=True)
        self.db["bookings"].create(
            {"booking_id": bytes, "charger_id": str, "host": bytes, "driver": bytes, "start": int, "end": int,
             "spend_cap": int, "state": str, "request": bytes, "answer": bytes, "updated": int, "access": bytes,
             "closed_by": bytes},
            pk="booking_id", if_not_exists=True,
        )
        self.db["bookings"].create_index(["charger_id", "start"], if_not_exists=True)
        for column in ("access", "closed_by"):  # a store made before it was kept
            if column not in self.db["bookings"].columns_dict:
                self.db["bookings"].add_column(column, bytes)
        self.db["peers"].create({"address": str, "seen": int}, pk="address", if_not_exists=True)
        self.db["found"].create({"rank": int, "envelope": bytes}, pk="rank", if_not_exists=True)
        self.db["sessions"].create(
            {"booking_id": bytes, "charger_id": str, "transaction_id": int, "meter_start": int, "start": bytes,
             "stop": bytes, "settlement": bytes, "answer": bytes},
            pk="booking_id", if_not_exists=True,
        )
        self.db["receipts"].create({"booking_id": bytes, "seq": int, "envelope": bytes},
                                   pk=("booking_id", "seq"), if_not_exists=True)

    def save_ad(self, ad: Signed[ChargerAd]) -> None:
        self.db.execute("INSERT OR REPLACE INTO ads VALUES (?, ?)", [ad.message.charger_id, ad.encode()])

    def ads(self) -> list[Signed[ChargerAd]]:
        return [Signed.decode(row["envelope"], ChargerAd) for row in self.db["ads"].rows]

    def remember_peers(self, addresses: list[str]) -> None:
        now = int(self.clock())
        for address in addresses:
            self.db.execute("INSERT OR REPLACE INTO peers VALUES (?, ?)", [address, now])

    def peers(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT address FROM peers ORDER BY seen DESC LIMIT 50")]

    def remember_found(self, ads: list[Signed[ChargerAd]]) -> None:
        self.db.execute("DELETE FROM found")
        for rank, ad in enumerate(ads, 1):
            self.db.execute("INSERT INTO found VALUES (?, ?)", [rank, ad.encode()])

    def found(self) -> list[Signed[ChargerAd]]:
        return [Signed.decode(row[0], ChargerAd) for row in self.db.execute("SELECT envelope FROM found ORDER BY rank")]

    def reserve(self, request: Signed[BookingRequest], state: BookingState) -> bool:
        """Hold the request's window for its charger if nothing holding overlaps it."""
        r = request.message
        with atomic(self.db.conn):
            clash = self.db.execute(
                f"SELECT 1 FROM bookings WHERE charger_id = ? AND host = ? AND start < ? AND end > ? "
                f"AND {_HOLDING_SQL} LIMIT 1",
                [r.charger_id, r.host, r.end, r.start, *HOLDING],
            ).fetchone()
            if clash is None:
                self._insert("INSERT", request, state)
        return clash is None

    def record(self, request: Signed[BookingRequest], state: BookingState) -> None:
        """Keep a booking this node is party to without holding a slot (the driver's copy)."""
        self._insert("INSERT OR REPLACE", request, state)

    def _insert(self, verb: str, request: Signed[BookingRequest], state: BookingState) -> None:
        r = request.message
        self.db.execute(
            f"{verb} INTO bookings (booking_id, charger_id, host, driver, start, end, spend_cap, state, request, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [request.digest, r.charger_id, r.host, r.driver, r.start, r.end, r.spend_cap, state.value,
             request.encode(), int(self.clock())],
        )

    def mark(self, booking_id: bytes, state: BookingState, *, answer: Signed[BookingConfirmation] | Signed[BookingRejection]
             | None = None, closed_by: Signed[Cancel] | Signed[NoShow] | None = None,
             access: bytes | None = None) -> None:
        """Move a booking to `state`, keeping what moved it: the host's answer (its
        confirmation or rejection), the cancel or no-show that closed it, the sealed access."""
        self.db.execute(
            "UPDATE bookings SET state = ?, answer = COALESCE(?, answer), closed_by = COALESCE(?, closed_by), "
            "access = COALESCE(?, access), updated = ? WHERE booking_id = ?",
            [state.value, answer and answer.encode(), closed_by and closed_by.encode(), access, int(self.clock()),
             booking_id],
        )

    def access(self, booking_id: bytes) -> bytes | None:
        """The sealed access info a driver was sent with its confirmation."""
        row = self.db.execute("SELECT access FROM bookings WHERE booking_id = ?", [booking_id]).fetchone()
        return row[0] if row is not None else None

    def get(self, booking_id: bytes) -> dict | None:
        try:
            return self.db["bookings"].get(booking_id)
        except sqlite_utils.db.NotFoundError:
            return None

    def request(self, booking_id: bytes) -> Signed[BookingRequest] | None:
        row = self.get(booking_id)
        return None if row is None else Signed.decode(row["request"], BookingRequest)

    def booking(self, booking_id: bytes) -> Booking | None:
        """The double-signed booking, if this node holds its confirmation."""
        confirmation = self._answer(booking_id, BookingConfirmation)
        return None if confirmation is None else Booking(request=self.request(booking_id),  # type: ignore[arg-type]
                                                         confirmation=confirmation)

    def rejection(self, booking_id: bytes) -> Signed[BookingRejection] | None:
        """The host's signed rejection of a booking request, if this node holds one."""
        return self._answer(booking_id, BookingRejection)

    def _answer(self, booking_id: bytes, kind: type[A]) -> Signed[A] | None:
        row = self.get(booking_id)
        if row is None or row["answer"] is None:
            return None
        try:
            return Signed.decode(row["answer"], kind)
        except DecodeError:
            return None  # the other kind of answer

    def listing(self) -> list[dict[str, Any]]:
        """Every booking as a person or a script reads it (ids as hex and peer ids, its
        window, its cap in the currency's minor units, its state), earliest first."""
        return [{"booking": row["booking_id"].hex(), "charger": row["charger_id"], "driver": peer_id(row["driver"]),
                 "host": peer_id(row["host"]), "start": row["start"], "end": row["end"], "spend_cap": row["spend_cap"],
                 "currency": Signed.decode(row["request"], BookingRequest).message.tariff.currency,
                 "state": row["state"]} for row in self.bookings()]

    def bookings(self, state: BookingState | None = None) -> list[dict]:
        where, args = ("state = ?", [state.value]) if state else (None, None)
        return list(self.db["bookings"].rows_where(where, args, order_by="start"))

    # --- sessions -----------------------------------------------------------------------

    def open_session(self, booking_id: bytes, charger_id: str, start: Signed[StartRequest]) -> None:
        """Keep a session's start (again: a driver re-attaching keeps its first start)."""
        with atomic(self.db.conn):
            self.db.execute("INSERT OR IGNORE INTO sessions (booking_id, charger_id, start) VALUES (?, ?, ?)",
                            [booking_id, charger_id, start.encode()])
            self.mark(booking_id, BookingState.STARTED)

    def drop_session(self, booking_id: bytes) -> None:
        """Undo `open_session` (the wallbox never started): the booking is confirmed again."""
        with atomic(self.db.conn):
            self.db.execute("DELETE FROM sessions WHERE booking_id = ?", [booking_id])
            self.mark(booking_id, BookingState.CONFIRMED)

    def new_transaction_id(self) -> int:
        """An OCPP transaction id never used before (it is used once `keep_session` stores it)."""
        return int(self.db.execute("SELECT COALESCE(MAX(transaction_id), 0) + 1 FROM sessions").fetchone()[0])

    def keep_session(self, booking_id: bytes, messages: Sequence[Signed[Message]],
                     transaction: tuple[int, int] | None = None) -> None:
        """Store one step of a session, all or nothing: the messages it took, each where
        it belongs (a replayed receipt is kept already: same seq, same bytes), the
        wallbox's (transaction id, meter start), and a settlement's closing of the booking."""
        with atomic(self.db.conn):
            if transaction is not None:
                self.db.execute("UPDATE sessions SET transaction_id = ?, meter_start = ? WHERE booking_id = ?",
                                [*transaction, booking_id])
            for signed in messages:
                if isinstance(signed.message, MeterReceipt):
                    self.db.execute("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?)",
                                    [booking_id, signed.message.seq, signed.encode()])
                else:
                    column = next(c for kind, c in _SESSION_COLUMNS if isinstance(signed.message, kind))
                    self.db.execute(f"UPDATE sessions SET {column} = ? WHERE booking_id = ?",
                                    [signed.encode(), booking_id])
                if isinstance(signed.message, Settlement):
                    self.mark(booking_id, BookingState.SETTLED)

    def session(self, booking_id: bytes) -> StoredSession | None:
        row = self.db.execute(f"SELECT {_SESSION_FIELDS} FROM sessions WHERE booking_id = ?", [booking_id]).fetchone()
        return None if row is None else self._session(row)

    def sessions(self, open_only: bool = False) -> list[StoredSession]:
        """The stored sessions; `open_only`: those the driver has not answered yet."""
        where = " WHERE answer IS NULL" if open_only else ""
        return [self._session(row) for row in self.db.execute(f"SELECT {_SESSION_FIELDS} FROM sessions{where}")]

    def _session(self, row: tuple) -> StoredSession:
        booking_id, charger_id, transaction_id, meter_start, start, stop, settlement, answer = row
        log: list[Signed[Message]] = [Signed.decode(e, MeterReceipt) for e, in self.db.execute(
            "SELECT envelope FROM receipts WHERE booking_id = ? ORDER BY seq", [booking_id])]
        if stop is not None:  # taken after the receipts dated before it
            signed_stop = Signed.decode(stop, StopRequest)
            log.insert(sum(1 for r in log if r.message.t <= signed_stop.message.t), signed_stop)  # type: ignore[attr-defined]
        log += [Signed.decode(settlement, Settlement)] if settlement is not None else []
        log += [Signed.decode(answer, SettlementEvent)] if answer is not None else []
        return StoredSession(booking_id, charger_id, Signed.decode(start, StartRequest),
                             None if transaction_id is None else (transaction_id, meter_start or 0), tuple(log))


    def close(self) -> None:
        self.db.close()

