"""The node's own SQLite state: its ads and the bookings it is party to.

Theory of operation (DESIGN.md, "Booking": atomic reservation; "Nothing is lost"):

- `ads(charger_id, envelope)`: the host's current signed ads, reloaded at start.
- `bookings(booking_id, charger_id, host, driver, start, end, spend_cap, state,
  request, answer, updated, access)`: every booking this node took part in, with the
  exact signed request and the signed answer (confirmation, rejection or cancel), and
  for a driver the access info sealed to it.
- `peers(address, seen)`: full addresses of peers joined before, to rejoin after a restart.
- `found(rank, envelope)`: a driver's last search results, signed ads, best first.
- `sessions(booking_id, charger_id, transaction_id, meter_start, start, stop,
  settlement, answer)` and `receipts(booking_id, seq, envelope)`: the host's charging
  sessions, each signed message stored before it is acted on (DESIGN.md, "Session and
  metering": nothing is lost when a node crashes); transaction ids are OCPP's and never
  reused.
- `reserve` is the slot lock: in one IMMEDIATE transaction it checks that no booking of
  the charger in a holding state (pending, confirmed, started) overlaps the window and
  inserts the new one. SQLite serialises writers, so two requests for one slot, from
  one process or several, can never both hold it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Callable

import sqlite_utils

from wattshare.protocol import BookingRequest, ChargerAd, Signed, wall_time


class Slot(StrEnum):
    PENDING = "pending"  # held while the host decides (manual approval)
    CONFIRMED = "confirmed"
    STARTED = "started"
    SETTLED = "settled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


HOLDING = (Slot.PENDING, Slot.CONFIRMED, Slot.STARTED)
_HOLDING_SQL = f"state IN ({', '.join('?' * len(HOLDING))})"


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
             "spend_cap": int, "state": str, "request": bytes, "answer": bytes, "updated": int, "access": bytes},
            pk="booking_id", if_not_exists=True,
        )
        self.db["bookings"].create_index(["charger_id", "start"], if_not_exists=True)
        if "access" not in self.db["bookings"].columns_dict:  # a store made before the driver kept it
            self.db["bookings"].add_column("access", bytes)
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

    def reserve(self, request: Signed[BookingRequest], state: Slot) -> bool:
        """Hold the request's window for its charger if nothing holding overlaps it."""
        r = request.message
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            clash = conn.execute(
                f"SELECT 1 FROM bookings WHERE charger_id = ? AND host = ? AND start < ? AND end > ? "
                f"AND {_HOLDING_SQL} LIMIT 1",
                [r.charger_id, r.host, r.end, r.start, *HOLDING],
            ).fetchone()
            if clash is None:
                conn.execute(
                    "INSERT INTO bookings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
                    [request.digest, r.charger_id, r.host, r.driver, r.start, r.end, r.spend_cap, state.value,
                     request.encode(), int(self.clock())],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return clash is None

    def record(self, request: Signed[BookingRequest], state: Slot, answer: bytes | None = None) -> None:
        """Keep a booking this node is party to without holding a slot (the driver's copy)."""
        r = request.message
        self.db.execute(
            "INSERT OR REPLACE INTO bookings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            [request.digest, r.charger_id, r.host, r.driver, r.start, r.end, r.spend_cap, state.value,
             request.encode(), answer, int(self.clock())],
        )

    def settle(self, booking_id: bytes, state: Slot, answer: bytes | None = None, access: bytes | None = None) -> None:
        self.db.execute(
            "UPDATE bookings SET state = ?, answer = COALESCE(?, answer), access = COALESCE(?, access), updated = ? "
            "WHERE booking_id = ?",
            [state.value, answer, access, int(self.clock()), booking_id],
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

    def bookings(self, state: Slot | None = None) -> list[dict]:
        where, args = ("state = ?", [state.value]) if state else (None, None)
        return list(self.db["bookings"].rows_where(where, args, order_by="start"))

    # --- sessions (the host's) ---------------------------------------------------------

    def open_session(self, booking_id: bytes, charger_id: str, start: bytes) -> None:
        """Keep a session's start (again: a driver re-attaching keeps its first start)."""
        self.db.execute("INSERT OR IGNORE INTO sessions (booking_id, charger_id, start) VALUES (?, ?, ?)",
                        [booking_id, charger_id, start])
        self.settle(booking_id, Slot.STARTED)

    def drop_session(self, booking_id: bytes) -> None:
        """Undo `open_session` (the wallbox never started): the booking is confirmed again."""
        self.db.execute("DELETE FROM sessions WHERE booking_id = ?", [booking_id])
        self.settle(booking_id, Slot.CONFIRMED)

    def next_transaction(self, booking_id: bytes, meter_start: int) -> int:
        """Give the session a new OCPP transaction id (never one used before)."""
        row = self.db.execute("SELECT COALESCE(MAX(transaction_id), 0) + 1 FROM sessions").fetchone()
        self.db.execute("UPDATE sessions SET transaction_id = ?, meter_start = ? WHERE booking_id = ?",
                        [row[0], meter_start, booking_id])
        return int(row[0])

    def update_session(self, booking_id: bytes, column: str, envelope: bytes) -> None:
        assert column in ("stop", "settlement", "answer")
        self.db.execute(f"UPDATE sessions SET {column} = ? WHERE booking_id = ?", [envelope, booking_id])

    def add_receipt(self, booking_id: bytes, seq: int, envelope: bytes) -> None:
        """Keep a receipt (a replayed one is already kept: its seq and bytes are the same)."""
        self.db.execute("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?)", [booking_id, seq, envelope])

    def session(self, booking_id: bytes) -> dict | None:
        try:
            return self.db["sessions"].get(booking_id)
        except sqlite_utils.db.NotFoundError:
            return None

    def sessions(self, open_only: bool = False) -> list[dict]:
        """The stored sessions; `open_only`: those the driver has not answered yet."""
        return list(self.db["sessions"].rows_where("answer IS NULL" if open_only else None))

    def receipts(self, booking_id: bytes) -> list[bytes]:
        return [row[0] for row in self.db.execute(
            "SELECT envelope FROM receipts WHERE booking_id = ? ORDER BY seq", [booking_id])]

    def close(self) -> None:
        self.db.close()

