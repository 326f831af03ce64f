"""A participant's home folder: key, TOML config, node state, ledger, admin socket.

Theory of operation: one home holds one participant (a host, a neighbour's wallet, or a
co-op): `key` (the Ed25519 seed, mode 0600; a co-op also keeps `treasurer.key` and
`witness.key`), `config.toml` (written by `init`, readable and editable by hand),
`node.db` (the node's state), `ledger.db` (its copy of the ledger) and `admin.sock`
(the running daemon's socket). The folder is `--home`, else `$WATTSHARE_HOME`, else
the platform's user data folder (platformdirs). It is created mode 0700.

`$WATTSHARE_CLOCK` (`speed:origin:anchor`, see `node.Clock`) runs every command on one
accelerated clock: the demo and the tests use it to live a night in seconds.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from wattshare.ledger import LedgerStore, StoreError
from wattshare.node import Clock, NodeError, parse_member
from wattshare.protocol import Identity, KeyFileError, write_private

from ._errors import fail

CLOCK_ENV = "WATTSHARE_CLOCK"
NOT_SET_UP = "run `wattshare host init`, `wallet init` or `coop init` first"
HOME_ENV = "WATTSHARE_HOME"


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or platformdirs.user_data_dir("wattshare"))


def clock_from_env() -> Clock:
    spec = os.environ.get(CLOCK_ENV)
    if not spec:
        return Clock()
    try:
        speed, origin, anchor = (float(part) for part in spec.split(":"))
        return Clock(speed, origin, anchor)
    except ValueError:
        fail(f"${CLOCK_ENV} must be speed:origin:anchor (numbers), not {spec!r}")


def member_key(text: str) -> bytes:
    """`parse_member` for a command line: a bad id is a one-line failure."""
    try:
        return parse_member(text)
    except NodeError as error:
        fail(str(error))


@dataclass(frozen=True)
class Home:
    path: Path

    @property
    def key(self) -> Path:
        return self.path / "key"

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def state(self) -> Path:
        return self.path / "node.db"

    @property
    def ledger_file(self) -> Path:
        return self.path / "ledger.db"

    @property
    def admin(self) -> Path:
        return self.path / "admin.sock"

    def create(self, force: bool) -> Identity:
        """Make the folder and a fresh key; refuses to overwrite one unless `force`."""
        if self.key.exists() and not force:
            fail(f"{self.path} already holds a participant; use another --home, or --force to replace it")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        return self.new_key(self.key.name)

    def new_key(self, name: str) -> Identity:
        """A fresh key saved in this home as `name` (mode 0600)."""
        identity = Identity.generate()
        identity.save(self.path / name)
        return identity

    def identity(self, name: str = "key") -> Identity:
        if not (self.path / name).exists():
            fail(f"no key in {self.path}: {NOT_SET_UP}")
        try:
            return Identity.load(self.path / name)
        except KeyFileError as error:
            fail(str(error))

    def config(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.config_file.read_text())
        except FileNotFoundError:
            fail(f"no config in {self.path}: {NOT_SET_UP}")
        except tomllib.TOMLDecodeError as error:
            fail(f"{self.config_file} is not valid TOML ({error}); fix it or run `init --force`")

    def write_config(self, config: dict[str, Any]) -> None:
        write_private(self.config_file, tomli_w.dumps(config).encode())  # it holds the exact address and access code

    def ledger(self) -> LedgerStore:
        """This home's ledger; a damaged file is reported with how to rebuild it from peers."""
        coop = self.config().get("node", {}).get("coop")
        if not coop:
            fail(f"{self.config_file} names no co-op ([node] coop); run `init --coop PEER_ID` again")
        try:
            return LedgerStore(self.ledger_file, member_key(coop), clock_from_env())
        except StoreError as error:
            fail(f"{error}. Move it aside (mv {self.ledger_file} {self.ledger_file}.damaged) and start again: "
                 "the node pulls the ledger back from its peers")
