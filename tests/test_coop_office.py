"""The co-op's office on a real ledger file, no network: what a treasurer, the co-op's key
and a witness may write, what each refuses, and the admin requests that carry them."""

import hashlib

import pytest
from fixtures import pinned_clock

from wattshare.ledger import EntryKind, LedgerStore, audit, checkpoints, movements
from wattshare.node import CoopOffice, CoopRefused
from wattshare.protocol import Identity

CLOCK = pinned_clock()  # the ledger's and the admin commands' clock
T = int(CLOCK()) - 3600  # the times the tests write at, before it


def key(name):
    return Identity(hashlib.sha256(f"coop-office/{name}".encode()).digest())


@pytest.fixture
def office(tmp_path):
    coop = key("coop")
    ledger = LedgerStore(tmp_path / "ledger.db", coop.public_key, clock=CLOCK)
    office = CoopOffice(ledger, coop, key("treasurer"), key("witness"))
    office.found("Acacia Avenue Energy", "EUR", 5_000, T)
    return office


def test_money_goes_to_admitted_members_only_and_the_ledger_audits(office):
    neighbour = key("neighbour").public_key
    with pytest.raises(CoopRefused, match="not a member of this co-op"):
        office.move_money(EntryKind.DEPOSIT, neighbour, 4_000, "SEPA 1", T + 10)  # a mistyped id moves nothing
    admitted, _ = office.admit(neighbour, None, T + 20)
    assert admitted.limit == office.ledger.state.credit_limit(neighbour) == 5_000  # the charter's default limit
    office.move_money(EntryKind.DEPOSIT, neighbour, 4_000, "SEPA 1", T + 30)
    with pytest.raises(CoopRefused, match="above zero"):
        office.move_money(EntryKind.WITHDRAWAL, neighbour, 0, "", T + 40)
    assert office.ledger.balance(neighbour, "EUR") == 4_000
    assert office.checkpoint(T + 50) >= 2  # the co-op's feed and the treasurer's
    assert audit(office.ledger.path).ok
    assert [(m.kind, m.delta) for m in movements(office.ledger, neighbour)] == [(EntryKind.DEPOSIT, 4_000)]
    [witnessed] = checkpoints(office.ledger)
    assert (witnessed.t, witnessed.witness, witnessed.feeds) == (T + 50, key("witness").public_key, 2)
    assert witnessed.entries == sum(office.ledger.sizes().values()) - 1  # every entry but the checkpoint itself


def test_admin_requests_are_parsed_into_one_line_refusals(office):
    commands = office.commands(CLOCK)
    neighbour = key("neighbour")
    for request, said in [
        ({"kind": "deposit", "member": "nobody", "amount": 100}, "is not a member's peer id"),
        ({"kind": "deposit", "member": neighbour.peer_id, "amount": "lots"}, "a kind"),
        ({"kind": "coop", "member": neighbour.peer_id, "amount": 100}, "not a money entry"),
        ({"kind": "adjustment", "booking": "zz", "payer": neighbour.peer_id, "payee": neighbour.peer_id,
          "amount": 100}, "not a valid adjustment request"),
    ]:
        with pytest.raises(CoopRefused, match=said):
            commands["money"](request)
    with pytest.raises(CoopRefused, match="credit limit"):
        commands["admit"]({"member": neighbour.peer_id, "limit": -5})
    admitted = commands["admit"]({"member": neighbour.peer_id, "limit": 2_500})
    assert (admitted["credit_limit"], admitted["currency"]) == (2_500, "EUR")
    paid = commands["money"]({"kind": "deposit", "member": neighbour.peer_id, "amount": 1_000, "reference": "cash"})
    assert (paid["kind"], paid["amount"]) == ("deposit", 1_000)
    assert office.ledger.balance(neighbour.public_key, "EUR") == 1_000


def test_an_office_without_a_charter_says_how_to_make_one(tmp_path):
    coop = key("coop")
    office = CoopOffice(LedgerStore(tmp_path / "empty.db", coop.public_key), coop, key("t"), key("w"))
    with pytest.raises(CoopRefused, match="coop init"):
        office.checkpoint(T)


def test_a_mistaken_deposit_is_reversed_once_and_both_entries_stay(office):
    """Issue 19, item 2: the co-op's documented way to undo a mistaken money entry."""
    neighbour, host = key("neighbour").public_key, key("host").public_key
    office.admit(neighbour, None, T + 10)
    office.admit(host, None, T + 11)
    wrong = office.move_money(EntryKind.DEPOSIT, host, 4_000, "SEPA 1", T + 20)  # meant for the neighbour
    undone = office.reverse(wrong.message.seq, T + 30)
    assert undone.message.kind is EntryKind.WITHDRAWAL and office.ledger.balance(host, "EUR") == 0
    with pytest.raises(CoopRefused, match="reversed already"):
        office.reverse(wrong.message.seq, T + 40)
    with pytest.raises(CoopRefused, match="no entry 99"):
        office.commands(CLOCK)["reverse"]({"seq": 99})
    office.move_money(EntryKind.DEPOSIT, neighbour, 4_000, "SEPA 1", T + 50)
    assert office.ledger.balance(neighbour, "EUR") == 4_000
    assert office.ledger.sizes()[office.treasurer.public_key] == 3  # deposit, its reversal, the right deposit
    assert audit(office.ledger.path).ok
