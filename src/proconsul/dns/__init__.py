"""The DNS interface: Consul's name forms over UDP and TCP, answered from a watched local view."""
