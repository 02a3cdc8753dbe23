"""SIP over TLS: the message subset we speak, the listener, outbound zones.

``message`` is pure (no I/O); ``listener`` is the asyncio TLS server that uses it with the
node's services (certificate access rules: ``certway.services.sip_rules``).
"""
