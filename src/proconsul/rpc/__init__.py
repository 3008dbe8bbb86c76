"""The server RPC port: a first-byte protocol switch, yamux multiplexing, net/rpc calls in
msgpack, the client-side connection pool and server selection, and forwarding to the leader
(Consul's agent/pool, agent/router and agent/consul/rpc.go)."""
