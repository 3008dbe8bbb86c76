"""Records shared by the state store, the server endpoints and the HTTP layer (Consul's structs)."""
