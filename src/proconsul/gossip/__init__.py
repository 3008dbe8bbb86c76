"""Gossip: a SWIM failure detector that speaks hashicorp/memberlist's wire protocol."""
