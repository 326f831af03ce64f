"""Can the internet reach this node? A dial-back on a new connection (AutoNAT, done so it tells).

Theory of operation (LIBP2P-NOTES.md: py-libp2p 0.8.1's AutoNAT dials back over the
connection that already exists, so an unreachable address is reported reachable): a node
asks the peers it joined through, over `/wattshare/dial-back/1.0.0`, to open a brand-new
TCP connection to the IP they see the question come from, at the node's listen port. The
asked peer dials only that IP (it is nobody's port scanner but the asker's own), only when
the question came over a direct link (through a relay it would see the relay), at most
one dial of DIAL_TIMEOUT per question behind the node's usual door, and answers what it
saw: the IP, and whether the port took the connection. A node behind a router that
forwards its port (or a node with a public address) learns `/ip4/<that IP>/tcp/<port>`
and announces it; one every peer finds unreachable stays reachable through its relays.
"""

from __future__ import annotations

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from wattshare.protocol import DialBack, DialedBack, ErrorReply, Reason, RemoteProtocolError

from ._addresses import is_circuit
from ._framing import FrameStream, ask, serve

DIAL_BACK_PROTOCOL = TProtocol("/wattshare/dial-back/1.0.0")
DIAL_TIMEOUT = 3.0  # real seconds the asked peer waits for the new connection
ASK_TIMEOUT = DIAL_TIMEOUT + 5.0


async def answer_dial_back(stream: INetStream) -> RemoteProtocolError | None:
    """Serve one dial-back question (see the module doc)."""

    async def respond(frames: FrameStream) -> None:
        question = await frames.receive(DialBack)
        if isinstance(question, ErrorReply):
            return
        remote = stream.muxed_conn.get_remote_address()
        relayed = any(is_circuit(a) for a in stream.muxed_conn.get_transport_addresses())
        if remote is None or relayed:
            raise RemoteProtocolError(Reason.ILLEGAL_STATE, "ask over a direct link: through a relay I see the relay")
        await frames.send(DialedBack(observed=remote[0], reachable=await dial(remote[0], question.port)))

    return await serve(stream, respond, ASK_TIMEOUT)


async def dial(ip: str, port: int) -> bool:
    """Does `ip`:`port` take a new TCP connection within DIAL_TIMEOUT?"""
    with trio.move_on_after(DIAL_TIMEOUT):
        try:
            connection = await trio.open_tcp_stream(ip, port)
        except OSError:
            return False
        await connection.aclose()
        return True
    return False


async def dial_back(host: IHost, peer: ID, port: int) -> DialedBack:
    """Ask `peer` to dial this node back at `port`; raises on refusal or fault."""
    return await ask(host, peer, DIAL_BACK_PROTOCOL, DialBack(port=port), DialedBack, ASK_TIMEOUT)
