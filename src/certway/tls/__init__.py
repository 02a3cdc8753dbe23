"""TLS: server contexts from the node state, SNI, hot reload."""
