"""The co-op's charter and admissions: who holds which role, who is a member, and with what credit.

Theory of operation (DESIGN.md, "Ledger"; the entry kinds in `_entry`): the co-op's key
writes a COOP entry with the charter (name, currency, the credit limit members are
admitted with, treasurer and witness keys, retirements) and an ADMIT entry per member
(`CreditLimit`). A charter that follows another must keep its currency and every
retirement, and retire every key it drops from a role (`successor_problem`): whether a
role entry counts then follows the feeds' order, never an author-chosen time.
"""

from __future__ import annotations

from enum import StrEnum

from wattshare.protocol import Record, record, require, require_range, require_size

_KEY = 32


def _require_keys(name: str, keys: tuple[bytes, ...], low: int, high: int) -> None:
    require_size(name, keys, low, high)
    require(all(len(k) == _KEY for k in keys), f"{name} are 32-byte keys")
    require(len(set(keys)) == len(keys), f"{name} lists a key twice")


@record
class CreditLimit(Record):
    """An admitted member and the most it may owe."""

    member: bytes
    limit: int  # minor units

    def _validate(self) -> None:
        require_size("member", self.member, _KEY, _KEY)
        require_range("limit", self.limit, 0, 10**12)


class Role(StrEnum):
    TREASURER = "treasurers"  # deposits, withdrawals and adjustments
    WITNESS = "witnesses"  # checkpoints


@record
class Retirement(Record):
    """`member` left `role`: its entries of that role at seq >= `until` move nothing."""

    member: bytes
    role: Role
    until: int  # the size of the member's feed when the co-op retired it

    def _validate(self) -> None:
        require_size("member", self.member, _KEY, _KEY)
        require_range("until", self.until, 0)


@record
class CoopCharter(Record):
    name: str
    currency: str
    credit_limit: int  # what a member is admitted with unless the co-op names another limit
    treasurers: tuple[bytes, ...]
    witnesses: tuple[bytes, ...]
    retired: tuple[Retirement, ...] = ()

    def _validate(self) -> None:
        require_size("name", self.name, 1, 100)
        require(len(self.currency) == 3 and self.currency.isupper(), "currency is an ISO 4217 code")
        require_range("credit_limit", self.credit_limit, 0, 10**12)
        _require_keys("treasurers", self.treasurers, 1, 16)
        _require_keys("witnesses", self.witnesses, 0, 16)
        require_size("retired", self.retired, 0, 1_000)
        held = {(key, role) for role in Role for key in getattr(self, role.value)}
        left = [(r.member, r.role) for r in self.retired]
        require(len(set(left)) == len(left), "retired lists a key and role twice")
        require(not held & set(left), "a retired key cannot hold that role again: give the role to a new key")

    def names(self) -> set[bytes]:
        """Every key this charter names: its treasurers, witnesses and retired keys."""
        return set(self.treasurers) | set(self.witnesses) | {r.member for r in self.retired}

    def admission(self, member: bytes, limit: int | None = None) -> CreditLimit:
        """The ADMIT body for `member`; `limit` defaults to the charter's `credit_limit`."""
        return CreditLimit(member=member, limit=self.credit_limit if limit is None else limit)

    def retire(self, member: bytes, role: Role, until: int) -> CoopCharter:
        """This charter with `member` dropped from `role`, its entries of that role from
        seq `until` on moving nothing."""
        keys = tuple(k for k in getattr(self, role.value) if k != member)
        return self.replace(**{role.value: keys},
                            retired=self.retired + (Retirement(member=member, role=role, until=until),))

    def successor_problem(self, newer: CoopCharter) -> str | None:
        """Why `newer` cannot follow this charter, or None: it must keep the currency
        (balances are kept in it) and every retirement, and retire every key it drops
        from a role (else the past entries of that key would stop counting)."""
        if newer.currency != self.currency:
            return f"the co-op keeps {self.currency}: a charter cannot change its currency"
        if not set(self.retired) <= set(newer.retired):
            return "it forgets a retirement of the charter before it"
        retired = {(r.member, r.role) for r in newer.retired}
        for role in Role:
            for key in set(getattr(self, role.value)) - set(getattr(newer, role.value)):
                if (key, role) not in retired:
                    return f"it drops a key from the {role.value} without retiring it"
        return None
