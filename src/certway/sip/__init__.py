"""SIP over TLS: the message subset we speak, certificate access rules, the listener, zones.

``message`` and ``rules`` are pure (no I/O); ``listener`` is the asyncio TLS server that uses
them with the node's services.
"""
