"""The shared shape of the booking and session state machines.

Theory of operation (STYLE.md point 1, after h11's `_state.py`): a machine holds the
signed messages of one booking. Its subclass declares *all* its transitions in one
table, `TRANSITIONS[(state, message type, role of the signer)] -> next state`; a step
not in the table is illegal. After the table, the subclass's `_check` applies the
rules that need the messages' contents (ids, times, chains, prices) and raises
`RemoteProtocolError(reason, text)`.

The same step is taken two ways, which differ only in whose fault a refusal is:
`send` for a message this side signed (refusal -> `IllegalTransition`, a local bug),
`receive` for one a peer sent (refusal -> `RemoteProtocolError` with the reason code
the node puts on the wire). A refused step changes nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from ._envelope import Signed
from ._errors import IllegalTransition, Reason, RemoteProtocolError
from ._record import Message


class Role(StrEnum):
    DRIVER = "driver"
    HOST = "host"


class Machine:
    """Base of BookingMachine and SessionMachine (see the module doc)."""

    TRANSITIONS: ClassVar[dict[tuple[Any, type[Message], Role], Any]]
    state: Any

    def __init__(self, booking_id: bytes, driver: bytes, host: bytes) -> None:
        self.booking_id = booking_id
        self._roles = {driver: Role.DRIVER, host: Role.HOST}
        self.history: list[Signed[Message]] = []

    def send(self, signed: Signed[Message]) -> None:
        """Take a step with a message this side signed; IllegalTransition if not allowed."""
        try:
            self._step(signed)
        except RemoteProtocolError as refusal:
            raise IllegalTransition(str(refusal)) from None

    def receive(self, signed: Signed[Message]) -> None:
        """Take a step with a peer's message; RemoteProtocolError if not allowed."""
        self._step(signed)

    def _step(self, signed: Signed[Message]) -> None:
        role = self._roles.get(signed.signer)
        if role is None:
            raise RemoteProtocolError(Reason.WRONG_SIGNER, f"{signed.type} signed by neither party of the booking")
        if getattr(signed.message, "booking_id", None) != self.booking_id:
            raise RemoteProtocolError(Reason.WRONG_BOOKING, f"{signed.type} names another booking")
        following = self.TRANSITIONS.get((self.state, type(signed.message), role))
        if following is None:
            raise RemoteProtocolError(Reason.ILLEGAL_STATE, f"{role} may not send {signed.type} when {self.state}")
        self._check(signed, role)
        self.state = following
        self.history.append(signed)
        self._after(signed)

    def _check(self, signed: Signed[Message], role: Role) -> None:
        """Content rules of a legal step; raise RemoteProtocolError. Overridden per machine."""

    def _after(self, signed: Signed[Message]) -> None:
        """Record what an accepted step established. Overridden per machine."""
