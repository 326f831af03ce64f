"""The node daemon (DESIGN.md, "Streams" onwards): trio + libp2p, DHT, protocols, OCPP.

Built by issues 4 and 5; this package depends on `wattshare.ledger` and `wattshare.protocol`.
"""
