"""Head announcements over gossipsub: a nudge to sync sooner, never the source of truth.

Theory of operation (DESIGN.md, "Ledger": "a gossipsub topic announcing heads";
LIBP2P-NOTES: default spam protection drops more than 10 messages/s per topic and
sender, subscriptions buffer 32 messages and drop the rest):

- A node publishes its own feed's latest signed head on `HEADS_TOPIC` whenever that
  feed has grown (checked every `ANNOUNCE_INTERVAL`), so a burst of appends costs one
  message. The rate limit is raised for this topic, and the subscription is drained
  continuously.
- A received head is verified (it is signed by its feed's author); if it is ahead of
  what this node holds, the peer that relayed it is nudged into an immediate pull.
  Anything else is dropped, and a message that is not a signed head at all is counted
  against its publisher (`blame`, the node's conduct record); no message, however
  made, ends the listener. A lost announcement costs only latency: anti-entropy
  (`_sync`) still converges.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID as GOSSIPSUB_ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from wattshare.ledger import FeedHead, LedgerStore
from wattshare.protocol import Reason, RemoteProtocolError, Signed

HEADS_TOPIC = "wattshare/ledger-heads/1"
ANNOUNCE_INTERVAL = 0.5
PUBLISH_TIMEOUT = 5.0
log = logging.getLogger(__name__)


class HeadGossip:
    def __init__(self, host: IHost, author: bytes, ledger: LedgerStore, nudge: Callable[[ID], None],
                 blame: Callable[[bytes, Reason], None] = lambda peer, reason: None) -> None:
        self.author = author
        self.ledger = ledger
        self.nudge = nudge
        self.blame = blame
        self.router = GossipSub(
            protocols=[GOSSIPSUB_ID], degree=6, degree_low=4, degree_high=12,
            heartbeat_initial_delay=0.1, heartbeat_interval=1, max_messages_per_topic_per_second=1000.0,
        )
        self.pubsub = Pubsub(host, self.router)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with background_trio_service(self.pubsub), background_trio_service(self.router):
            await self.pubsub.wait_until_ready()
            subscription = await self.pubsub.subscribe(HEADS_TOPIC)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, subscription)
                nursery.start_soon(self._announce)
                yield
                nursery.cancel_scope.cancel()

    async def _listen(self, subscription) -> None:
        async for message in subscription:
            try:
                publisher = ID(message.from_id)
                head = Signed.decode(message.data, FeedHead).message
            except RemoteProtocolError as error:
                log.info("dropped a bad head announcement: %s", error)
                with contextlib.suppress(Exception):  # a publisher id that names no key is blamed on nobody
                    self.blame(publisher.extract_public_key().to_bytes(), error.reason)
                continue
            except Exception as error:  # noqa: BLE001 - whatever a stranger publishes, we keep listening
                log.info("dropped an unreadable head announcement: %s", error)
                continue
            if head.size > self.ledger.state.size(head.author):
                self.nudge(publisher)

    async def _announce(self) -> None:
        announced = 0
        while True:
            await trio.sleep(ANNOUNCE_INTERVAL)
            size = self.ledger.state.size(self.author)
            if size > announced:
                head = next(iter(self.ledger.heads([self.author])), None)  # its own head only: one read
                if head is not None and head.message.size == size:
                    with trio.move_on_after(PUBLISH_TIMEOUT):
                        await self.pubsub.publish(HEADS_TOPIC, head.encode())
                        announced = size
