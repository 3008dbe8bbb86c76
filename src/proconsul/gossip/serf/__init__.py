"""Serf on top of the gossip layer: tags, Lamport clocks, member states, events and queries."""
