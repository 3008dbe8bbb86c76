"""proconsul: a service-discovery, health-checking and KV agent that speaks Consul's interfaces."""

__version__ = "0.1.0"

#: The Consul version whose API, CLI and config this release answers as.
CONSUL_COMPAT_VERSION = "1.17.0"
