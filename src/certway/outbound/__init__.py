"""Outbound connections to the systems around the node (remote syslog)."""
