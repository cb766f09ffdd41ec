"""The local geo topology: the geo router (Cloudflare's stand-in), Consul discovery, `make up` and `make demo`."""
