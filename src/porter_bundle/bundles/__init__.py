"""CNAB bundles: bundle.json parsing and validation (and, later, OCI registries)."""
