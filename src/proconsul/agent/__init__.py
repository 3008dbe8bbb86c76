"""The agent: wires configuration, the server, HTTP and (later) DNS and gossip together."""
