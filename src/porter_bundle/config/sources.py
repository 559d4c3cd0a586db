"""Where settings come from, low to high precedence: the declared defaults, a YAML config file
(``--config FILE`` or ``$PORTER_BUNDLE_CONFIG``), the environment (``PORTER_BUNDLE_*``), the
``serve`` flags. The flags are generated from the declarations in :mod:`.settings`; their help
shows the declared defaults only, never a value from the environment or the config file."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource, YamlConfigSettingsSource

from porter_bundle.config.settings import Settings, choices_of, name_of, option_of

F = TypeVar("F", bound=Callable[..., Any])

CONFIG_FLAG = "--config"
ENV_CONFIG = "PORTER_BUNDLE_CONFIG"
CONFIG_HELP = (
    "YAML file of settings, keyed by their names (e.g. grace_seconds: 5, insecure_registries: "
    "[reg.local:5000]); a flag beats the environment, which beats the file"
)


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each setting (flag and environment
    variable) and never quotes a value given for it."""


class EnvironmentSource(PydanticBaseSettingsSource):
    """The settings given in the environment, each under its declared ``PORTER_BUNDLE_*``
    name; empty variables count as unset."""

    def __init__(self, settings_cls: type[Settings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The raw value of one setting, the variable it came from, and False (values are
        never JSON: a list is comma-separated)."""
        env = option_of(field).env
        return self._environ.get(env, "").strip() or None, env, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


def read_config_file(path: str) -> dict[str, Any]:
    """The settings of a YAML config file (a mapping of setting names to values)."""
    if not Path(path).is_file():
        raise SettingsError(f"config file {path} ({CONFIG_FLAG} / {ENV_CONFIG}) does not exist")
    try:
        values = YamlConfigSettingsSource(Settings, yaml_file=path)()
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        problem = str(exc).splitlines()[0] if isinstance(exc, OSError) else "not a YAML mapping"
        raise SettingsError(f"config file {path}: {problem}") from None
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str = "",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The settings from ``flags`` (setting name -> value given), the environment (``environ``,
    default ``os.environ``) and the config file (``config_file``, else ``$PORTER_BUNDLE_CONFIG``),
    in that order of precedence over the defaults. SettingsError names what is wrong."""
    environ = os.environ if environ is None else environ
    path = config_file or environ.get(ENV_CONFIG, "").strip()
    from_file = read_config_file(path) if path else {}
    from_env = EnvironmentSource(Settings, environ)()
    try:
        return Settings(**{**from_file, **from_env, **(flags or {})})
    except ValidationError as exc:
        raise SettingsError(describe(exc, path)) from None


def describe(exc: ValidationError, config_file: str = "") -> str:
    """One line per problem, naming the setting by its name, flag and environment variable."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        context = error.get("ctx") or {}
        message = str(context["error"]) if "error" in context else error["msg"]
        loc = error["loc"]
        if not loc:
            lines.append(message)
        elif loc[0] not in Settings.model_fields:
            lines.append(f"unknown setting {loc[0]!r} in config file {config_file}")
        else:
            lines.append(f"{loc[0]} ({name_of(str(loc[0]))}): {message}")
    return "; ".join(lines)


# --- the flags ------------------------------------------------------------------------------


class SettingOption(click.Option):
    """A ``serve`` flag generated from a setting's declaration, shown under its group."""

    def __init__(self, *args: Any, group: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists the setting flags under their groups, as declared."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "group", "") or "options", []).append(record)
        for group, records in groups.items():
            with formatter.section(group):
                formatter.write_dl(records)


def setting_options(only: Collection[str] = ()) -> Callable[[F], F]:
    """Decorates a click command with a flag for each declared setting that has one (or for
    those named in ``only``), plus ``--config``. Every default is None (not given): the help
    shows the declared default instead, never a value from the environment or a file."""

    def decorate(f: F) -> F:
        params: list[click.Parameter] = []
        for name, field in Settings.model_fields.items():
            option = option_of(field)
            if option.flag is None or (only and name not in only):
                continue
            kwargs: dict[str, Any] = {
                "default": None,
                "help": help_text(name),
                "group": option.group,
            }
            choices = choices_of(field)
            decls = [option.flag, name]
            if field.annotation is bool:
                flag = option.flag.removeprefix("--")
                decls = [f"{option.flag}/--no-{flag}", name]
            elif choices:
                kwargs["type"] = click.Choice(choices, case_sensitive=False)
            else:
                kwargs["metavar"] = option.metavar
                if field.annotation == frozenset[str]:
                    kwargs.update(multiple=True, default=())
            params.append(SettingOption(decls, **kwargs))
        params.append(
            SettingOption(
                [CONFIG_FLAG, "config_file"],
                default="",
                metavar="FILE",
                help=f"{CONFIG_HELP} (env {ENV_CONFIG})",
            )
        )
        existing: list[click.Parameter] = getattr(f, "__click_params__", [])
        f.__click_params__ = [*existing, *reversed(params)]  # type: ignore[attr-defined]
        return f

    return decorate


def flags_given(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given as flags (setting name -> value) among a command's parameters, for
    :func:`load_settings`."""
    given: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = params.get(name)
        if value is None or value == ():
            continue
        given[name] = list(value) if isinstance(value, tuple) else value
    return given


def help_text(name: str) -> str:
    """A setting's help: what it means, its declared default, its environment variable."""
    option = option_of(Settings.model_fields[name])
    return f"{describe_field(name)} (default: {default_text(name)}; env {option.env})"


def describe_field(name: str) -> str:
    """What a setting means (its declared description)."""
    return Settings.model_fields[name].description or ""


def default_text(name: str) -> str:
    """A setting's declared default as text."""
    field = Settings.model_fields[name]
    option = option_of(field)
    if option.default_text is not None:
        return option.default_text
    value = field.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
