"""HTTPS admin (web UI + REST API) and the plain-HTTP publication of CRLs and OCSP."""
