"""TLS configuration that every TLS endpoint shares, below the services: the Mozilla-style
profiles (``policy``) and the few OpenSSL calls Python's ``ssl`` lacks (``openssl``).

It depends on nothing of certway but ``errors``, so the services, outbound fetching and the
listeners (``tls``, ``sip``, ``web``) can all apply the same profile."""
