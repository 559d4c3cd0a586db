"""Authentication (bearer tokens, mutual TLS), authorization (roles per namespace) and the
audit log of sensitive-value reveals."""
