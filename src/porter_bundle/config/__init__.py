"""Server settings: each declared once (:mod:`.settings`), loaded from flags, environment and
an optional YAML config file (:mod:`.sources`), listed in docs/configuration.md (:mod:`.table`); and the
files they point at (:mod:`.resources`)."""

from __future__ import annotations

from porter_bundle.config.resources import (
    default_key_file,
    key_file_path,
    load_registry_auths,
    open_keyring,
)
from porter_bundle.config.settings import (
    DATA_DIR_KEY_FILE,
    DATABASE_FILE,
    DEFAULT_ADDRESS,
    Option,
    Settings,
    default_data_dir,
    env_of,
    name_of,
    redact_url,
    sqlite_url,
)
from porter_bundle.config.sources import (
    ENV_CONFIG,
    GroupedCommand,
    SettingsError,
    flags_given,
    load_settings,
    setting_options,
)

# The environment variables other commands share with ``serve``.
ENV_DATA_DIR = env_of("data_dir")
ENV_DATABASE = env_of("database")
ENV_ENCRYPTION_KEY = env_of("encryption_key")
ENV_ENCRYPTION_KEY_FILE = env_of("encryption_key_file")
ENV_REGISTRY_CONFIG = env_of("registry_config")

__all__ = [
    "DATABASE_FILE",
    "DATA_DIR_KEY_FILE",
    "DEFAULT_ADDRESS",
    "ENV_CONFIG",
    "ENV_DATABASE",
    "ENV_DATA_DIR",
    "ENV_ENCRYPTION_KEY",
    "ENV_ENCRYPTION_KEY_FILE",
    "ENV_REGISTRY_CONFIG",
    "GroupedCommand",
    "Option",
    "Settings",
    "SettingsError",
    "default_data_dir",
    "default_key_file",
    "env_of",
    "flags_given",
    "key_file_path",
    "load_registry_auths",
    "load_settings",
    "name_of",
    "open_keyring",
    "redact_url",
    "setting_options",
    "sqlite_url",
]
