"""Account proofs over `/wattshare/account/1.0.0`: how a light member learns a member's account.

Theory of operation (DESIGN.md, "Light and full members"; `ledger._light`): one
request, one answer:

    asker -> node   AccountQuery{member}
    node -> asker   AccountProof (the member's account in the latest checkpoint the node
                    signed, or the newest proof of it the node keeps), or an error frame
                    (NOT_A_MEMBER: it proves nothing for that key)

Any node with a ledger answers; a co-op's witness node can prove every member. The asker
verifies the proof (a checkpoint under its co-op's charter, the account on its signed
root) and keeps it if it is newer than the one it keeps; a peer serving one that does
not verify is refused and blamed. Light members ask the peers they joined through (their
co-op's nodes) in turn, and do without when none answers: their credit check is safe
from no checkpoint at all, only slower to free credit (`ledger._light`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from wattshare.ledger import AccountProof, AccountQuery, EntryRefused, LedgerStore, Rule, keep, prove
from wattshare.protocol import ErrorReply, Reason, RemoteProtocolError

from ._framing import FrameStream, ask, serve

ACCOUNT_PROTOCOL = TProtocol("/wattshare/account/1.0.0")
ACCOUNT_FRAME = 64 * 1024  # a proof: one checkpoint entry (at most 49 KiB) and a path of hashes
ACCOUNT_TIMEOUT = 5.0
log = logging.getLogger(__name__)


class AccountDesk:
    """Answer and ask for account proofs for one ledger (see the module doc)."""

    def __init__(self, ledger: LedgerStore, blame: Callable[[bytes, Reason], None] = lambda who, reason: None) -> None:
        self.ledger = ledger
        self.blame = blame

    async def handle(self, stream: INetStream) -> RemoteProtocolError | None:
        async def respond(frames: FrameStream) -> None:
            query = await frames.receive(AccountQuery)
            if isinstance(query, ErrorReply):
                return
            proof = prove(self.ledger, query.member)
            if proof is None or proof.account.member != query.member:
                raise RemoteProtocolError(Reason.NOT_A_MEMBER, "no checkpoint here holds that member's account")
            await frames.send(proof)

        return await serve(stream, respond, ACCOUNT_TIMEOUT, max_size=ACCOUNT_FRAME)

    async def fetch(self, host: IHost, peers: Iterable[ID], member: bytes) -> bool:
        """Ask `peers` in turn for `member`'s account and keep the first proof that
        verifies; False if none had one (or none answered in time)."""
        for peer in peers:
            try:
                proof = await ask(host, peer, ACCOUNT_PROTOCOL, AccountQuery(member=member), AccountProof,
                                  ACCOUNT_TIMEOUT, max_size=ACCOUNT_FRAME)
                if proof.account.member != member:
                    raise EntryRefused(Rule.MALFORMED, "a proof of another member's account")
                keep(self.ledger, proof)
                return True
            except EntryRefused as refused:
                self.blame(peer.extract_public_key().to_bytes(), refused.rule.reason)
                log.info("%s served an account proof that does not verify: %s", peer, refused)
            except Exception as error:  # noqa: BLE001 - one peer's silence must not stop asking the next
                log.info("no account proof from %s: %s", peer, error)
        return False
