"""Server side: the FSM that applies commands to the store, and the endpoints that serve reads
and submit writes."""
