"""The replicated append-only ledger (DESIGN.md, "Ledger"): feeds, Merkle proofs, rules, audit.

Built by issue 3; this package depends only on `wattshare.protocol`.
"""
