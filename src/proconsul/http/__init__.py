"""HTTP API: Consul's /v1 routes served by an asyncio protocol on httptools."""
