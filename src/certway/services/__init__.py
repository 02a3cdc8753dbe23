"""Use cases. No web, CLI or SQL here: services call repositories and the pki layer."""
