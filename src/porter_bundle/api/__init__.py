"""The gRPC surface: servicers, error mapping and the server factory."""
