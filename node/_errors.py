"""The node's errors: one root, `NodeError`, for what a node call refuses to do.

Each says in one line what went wrong and what to do next, so the CLI prints it as it is.
Errors of the peer's making stay the protocol's (`RemoteProtocolError` and its reason
codes); errors of the disk stay SQLite's.
"""

from __future__ import annotations


class NodeError(Exception):
    """Root of the node's refusals."""


class SessionLost(NodeError):
    """The driver's link to its running session ended; the session goes on at the host."""


class DisputeRefused(NodeError):
    """Nothing of the host's to dispute, an answer already given, or the window closed."""
