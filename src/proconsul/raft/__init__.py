"""Raft: the log, stable and snapshot stores, and the node that commits commands through them
(after hashicorp/raft)."""
