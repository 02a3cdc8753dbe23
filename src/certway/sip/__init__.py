"""SIP over TLS (S4, S5): the message subset we speak, certificate access rules, the listener.

``message`` and ``rules`` are pure (no I/O); ``listener`` is the asyncio TLS server that uses
them with the node's services.
"""
