"""The `wattshare` command as a user runs it (subprocess of the installed console script)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

WATTSHARE = shutil.which("wattshare", path=str(Path(sys.executable).parent)) or "wattshare"


def run(*args):
    return subprocess.run([WATTSHARE, *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_demo():
    result = run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "Example" in result.stdout


def test_demo_runs_a_whole_neighbourhood_to_an_audited_ledger_and_keeps_its_apps(tmp_path):
    result = subprocess.run([WATTSHARE, "demo", "--keep", "--dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=110, env={**os.environ, "COLUMNS": "200"})
    try:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        out = result.stdout
        assert "6 found" in out and "confirmed" in out and "acked" in out
        assert "audit passed" in out and "Balances" in out
        assert re.search(r"driver \(12D3KooW[^)]*\) +│ +3\d\.\d\d EUR", out)  # paid for the night out of 40.00
        wallet = re.search(r"the driver's wallet: +(http://127\.0\.0\.1:\d+)", out)[1]
        with urllib.request.urlopen(f"{wallet}/api/wallet/bookings", timeout=10) as answer:
            assert [row["state"] for row in json.loads(answer.read())] == ["settled"]  # the night's booking
    finally:
        stop = re.search(r"stop them with: (pkill .*)", result.stdout)
        subprocess.run(stop[1] if stop else f"pkill -f 'wattshare.cli --home {tmp_path}'", shell=True, check=False)
    deadline = time.monotonic() + 20
    while list(tmp_path.glob("*/admin.sock")):  # every daemon stops and cleans up on the command the demo printed
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.parametrize("args", [("frobnicate",), ("demo", "--no-such-flag")])
def test_bad_arguments_give_usage_error(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Error" in result.stderr


@pytest.fixture
def ledger_file(tmp_path):
    from wattshare.ledger import LedgerStore
    from wattshare.testing import EPOCH, SampleWorld

    world = SampleWorld(seed=21)
    store = LedgerStore(tmp_path / "ledger.db", world.coop.public_key, clock=world.clock)
    session = world.session(world.hosts[0], world.drivers[0], EPOCH + 22 * 3600)
    entries = [world.charter_entry(), world.money(world.drivers[0], 10_000, EPOCH + 1),
               world.settlement_entry(session), world.ack_entry(session)]
    store.ingest([e.encode() for e in entries])
    store.close()
    return tmp_path / "ledger.db"


def test_audit_of_a_sound_ledger(ledger_file):
    result = run("audit", str(ledger_file))
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stdout and "96.11 EUR" in result.stdout  # 100.00 - 3.89 for the night


def test_audit_json_and_a_violation(ledger_file):
    import json
    import sqlite3

    with sqlite3.connect(ledger_file) as conn:
        conn.execute("UPDATE balances SET balance = balance + 1")
    result = run("audit", str(ledger_file), "--json", "--workers", "1")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["ok"] and {v["rule"] for v in report["violations"]} == {"balance_mismatch", "conservation"}


def test_audit_incremental_keeps_a_mark_and_then_checks_only_what_is_new(ledger_file):
    import json

    first = json.loads(run("audit", str(ledger_file), "--incremental", "--json", "--workers", "1").stdout)
    assert first["ok"] and (first["entries"], first["since"]) == (4, 0)
    assert ledger_file.with_name("ledger.db.audit-mark").exists()
    result = run("audit", str(ledger_file), "--incremental")
    assert result.returncode == 0 and "0 new, 4 checked before (incremental)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (("audit", "/nonexistent/ledger.db"), "no ledger at"),
    (("audit", "x.db", "--workers", "0"), "Invalid value for '--workers'"),
])
def test_audit_bad_arguments(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_audit_export_writes_balances_and_cdrs(ledger_file, tmp_path):
    out = tmp_path / "export"
    result = run("audit", str(ledger_file), "--export", str(out))
    assert result.returncode == 0, result.stderr
    assert "exported 2 balances and 1 CDRs" in result.stdout  # the driver and the host
    assert (out / "balances.csv").read_text().startswith("member,currency,balance,credit_limit,balance_major")
    assert len(list((out / "cdrs").glob("*.json"))) == 1


def test_every_command_has_help_with_an_example():
    import click

    from wattshare.cli._main import main

    def commands(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, [*path, name])

    missing = [" ".join(path) for path, command in commands(main, ["wattshare"]) if "Example" not in (command.help or "")]
    assert missing == []
    result = run("wallet", "find", "--help")
    assert result.returncode == 0 and "Example:" in result.stdout and "--near" in result.stdout
    assert isinstance(main, click.Group)


def test_host_config_words_become_the_ads_terms():
    from wattshare.cli._charger import amount, charger_ad, days, hours
    from wattshare.protocol import PRICE_SCALE, DayOfWeek

    assert days("fri-mon") == ["MONDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
    assert hours("23:00-07:00", "--hours") == ("23:00", "07:00")
    assert amount("0.12", "EUR", "--peak", PRICE_SCALE) == 12_000 and amount("2.5", "EUR", "--flat") == 250
    charger = {"id": "driveway", "lat": 52.5365, "lon": 13.4175, "tz": "Europe/Berlin", "connector": "type2",
               "max_kw": 7.4, "currency": "EUR", "off_peak": "23:00-07:00@0.12", "peak": "0.30", "flat": "0.50",
               "hours": "18:00-08:00", "days": days("mon-fri"), "terms": {
                   "cancel_until_minutes": 60, "cancel_fee": 200, "noshow_timeout_minutes": 30, "noshow_fee": 300,
                   "early_start_minutes": 5, "dispute_window_minutes": 10080}}
    ad = charger_ad(charger, bytes(32), 3, now=1_796_000_000)
    assert ad.geohash == "u33dc7f" and ad.max_power_w == 7_400 and ad.seq == 3
    assert [c.price for e in ad.tariff.elements for c in e.price_components] == [50_000, 12_000, 30_000]
    assert ad.availability[0].days == tuple(DayOfWeek)[:5] and ad.terms.noshow_fee == 300
