"""OCPP 1.6J as the central system reads it: frames and tolerant payload readers.

Theory of operation (OCPP-J 1.6 section 4; DESIGN.md, "OCPP"):

- A frame is a JSON array: CALL `[2, id, action, payload]`, CALLRESULT `[3, id,
  payload]`, CALLERROR `[4, id, code, description, details]`. `parse_frame` returns a
  `Call`, `CallResult` or `CallError`, or raises `OcppError` with the CALLERROR code to
  answer (and the message id, when one could be read), so a malformed frame is
  answered, never fatal.
- Payloads are read tolerantly, as real chargers break the schema: extra fields are
  ignored, over-long strings are cut, unknown enum values are kept as text, and each is
  logged once per field. Only what the central system cannot do without (a missing
  transactionId, a meter value that is not a number) is refused, with the code OCPP
  prescribes (`OccurenceConstraintViolation`, `TypeConstraintViolation`, ...).
- `energy_readings` takes the cumulative Energy.Active.Import.Register readings out of
  MeterValues / StopTransaction transactionData: a sampled value with no measurand *is*
  that register (the spec's default), the unit is Wh unless it says kWh, the value is
  a plain decimal string (at most 15 digits and 9 decimals, no exponent: checked
  before any arithmetic, so no value can stall the node), and the result is whole Wh
  (exact decimal arithmetic, no floats).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

log = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_FRAME = 64 * 1024
ENERGY = "Energy.Active.Import.Register"


class OcppError(Exception):
    """A frame or payload we refuse; `code` is the CALLERROR code to answer with."""

    def __init__(self, code: str, description: str, message_id: str | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    message_id: str
    code: str
    description: str


Frame = Call | CallResult | CallError


def parse_frame(text: str | bytes) -> Frame:
    """One OCPP-J frame, or OcppError (see the module doc)."""
    if len(text) > MAX_FRAME:
        raise OcppError("ProtocolError", f"frame longer than {MAX_FRAME} bytes")
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise OcppError("FormationViolation", "not JSON") from None
    if not isinstance(value, list) or len(value) < 3 or value[0] not in (CALL, CALLRESULT, CALLERROR):
        raise OcppError("FormationViolation", "not an OCPP-J frame [type, id, ...]")
    kind, message_id = value[0], value[1]
    if not isinstance(message_id, str) or not message_id or len(message_id) > 36:
        raise OcppError("FormationViolation", "the message id must be a string of 1-36 characters")
    if kind == CALL:
        if len(value) != 4 or not isinstance(value[2], str) or not isinstance(value[3], dict):
            raise OcppError("FormationViolation", "a CALL is [2, id, action, {payload}]", message_id)
        return Call(message_id, value[2], value[3])
    if kind == CALLRESULT:
        if len(value) != 3 or not isinstance(value[2], dict):
            raise OcppError("FormationViolation", "a CALLRESULT is [3, id, {payload}]", message_id)
        return CallResult(message_id, value[2])
    code = value[2] if isinstance(value[2], str) else "GenericError"
    description = value[3] if len(value) > 3 and isinstance(value[3], str) else ""
    return CallError(message_id, code, description[:255])


def call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return json.dumps([CALL, message_id, action, payload])


def call_result(message_id: str, payload: dict[str, Any]) -> str:
    return json.dumps([CALLRESULT, message_id, payload])


def call_error(message_id: str, code: str, description: str) -> str:
    return json.dumps([CALLERROR, message_id, code, description[:255], {}])


# --- tolerant payload readers ---------------------------------------------------------

_tolerated: set[tuple[str, str]] = set()


def tolerate(where: str, what: str) -> None:
    """Log a schema slip of a charger once per (action, field), and carry on."""
    if (where, what) not in _tolerated:
        _tolerated.add((where, what))
        log.warning("charger quirk tolerated in %s: %s", where, what)


def field(payload: dict[str, Any], name: str, kind: type, where: str, *, required: bool = True,
          default: Any = None, max_len: int | None = None) -> Any:
    """`payload[name]` of type `kind`; a string longer than `max_len` is cut (tolerated)."""
    if name not in payload:
        if required:
            raise OcppError("OccurenceConstraintViolation", f"{where} needs {name}")
        return default
    value = payload[name]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        if required:
            raise OcppError("TypeConstraintViolation", f"{where}.{name} must be {kind.__name__}")
        tolerate(where, f"{name} of the wrong type ignored")
        return default
    if max_len is not None and isinstance(value, str) and len(value) > max_len:
        tolerate(where, f"{name} longer than {max_len} characters, cut")
        value = value[:max_len]
    return value


def timestamp(payload: dict[str, Any], name: str, where: str) -> int:
    """An OCPP dateTime field as UTC Unix seconds (whole seconds, rounded down)."""
    text = field(payload, name, str, where)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OcppError("TypeConstraintViolation", f"{where}.{name} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        tolerate(where, f"{name} without a zone, read as UTC")
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def iso(t: float) -> str:
    """UTC Unix seconds as an OCPP dateTime."""
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{1,9})?")  # what a meter register can hold, no exponent


def _wh(sample: dict[str, Any], where: str) -> int:
    raw = sample.get("value")
    if not isinstance(raw, str) or not _DECIMAL.fullmatch(raw):  # checked before Decimal: "1e1500000" stalls int()
        raise OcppError("TypeConstraintViolation", f"{where}: meter value {str(raw)[:20]!r} is not a decimal string")
    value = Decimal(raw)
    unit = sample.get("unit", "Wh")
    if unit == "kWh":
        value *= 1000
    elif unit != "Wh":
        tolerate(where, f"energy unit {str(unit)[:10]!r} read as Wh")
    return int(value)


def energy_readings(meter_values: Any, where: str) -> list[tuple[int, int]]:
    """The (t, cumulative Wh) register readings in a list of MeterValue objects."""
    if not isinstance(meter_values, list):
        raise OcppError("TypeConstraintViolation", f"{where}: meterValue must be a list")
    readings = []
    for meter_value in meter_values:
        if not isinstance(meter_value, dict):
            raise OcppError("TypeConstraintViolation", f"{where}: a meterValue must be an object")
        t = timestamp(meter_value, "timestamp", where)
        samples = field(meter_value, "sampledValue", list, where)
        for sample in samples:
            if isinstance(sample, dict) and sample.get("measurand", ENERGY) == ENERGY \
                    and sample.get("phase") is None:
                readings.append((t, _wh(sample, where)))
    return readings
