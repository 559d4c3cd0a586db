"""CNAB bundles: bundle.json parsing and validation, the cnab-to-oci layout and the OCI registry
client that pulls and publishes bundles."""
