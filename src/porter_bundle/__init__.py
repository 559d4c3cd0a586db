"""porter-bundle: a gRPC service that manages CNAB bundle installations the way Porter does."""

__version__ = "0.1.0"
