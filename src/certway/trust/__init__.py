"""The trust engine: trusted-CA snapshot, revocation index, policies, validation, identity."""
