"""Settings of ``qroute serve``: a TOML file, then ``QROUTE_*`` environment
variables, then flags, each overriding the one before.

The settings are the options of ``serve`` itself: a flag ``--data-dir`` is
the setting ``data_dir``, the TOML key ``data_dir`` and the environment
variable ``QROUTE_DATA_DIR``. So a flag added to ``serve`` is a setting at
once. The file and the environment are turned into the parser's defaults
(``parser.set_defaults``) before the flags are parsed, with the flag's own
``type`` and ``choices`` checks; a flag given on the command line then wins.

A key of the file that is not a setting is an error (a typo must not be
silently ignored). The environment is only read for the settings' names:
other ``QROUTE_*`` variables (``QROUTE_TARGET``, ``QROUTE_NO_EXTENSIONS``...)
belong to other commands. The admin key is a secret: it comes from
``QROUTE_ADMIN_KEY`` (or the data dir), never from the file, and
``qroute config show`` masks it.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

ENV_PREFIX = "QROUTE_"
CONFIG_ENV = "QROUTE_CONFIG"  # the file, when --config is not given
SECRET_ENV = ("QROUTE_ADMIN_KEY",)
# options of serve that are not settings
NOT_SETTINGS = frozenset({"help", "config", "handler"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A bad configuration file or environment variable; the message names it."""


def settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The settings of ``parser``: its options by ``dest``."""
    return {action.dest: action for action in parser._actions  # noqa: SLF001 (argparse has no public list)
            if action.option_strings and action.dest not in NOT_SETTINGS}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _convert_one(action: argparse.Action, value: Any, where: str) -> Any:
    if action.type is not None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a single value, got {value!r}")
        try:
            value = action.type(str(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc or 'invalid value'} ({value!r})") from None
    elif not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        value = str(value)
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def convert(action: argparse.Action, value: Any, where: str, from_env: bool = False) -> Any:
    """``value`` (from TOML, or an environment string) as the flag would
    have parsed it; ConfigError naming ``where`` if it is not valid."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
        if from_env:
            text = str(value).strip().lower()
            if text not in _TRUE | _FALSE:
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            flag_set = text in _TRUE
        elif isinstance(value, bool):
            flag_set = value
        else:
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return flag_set if isinstance(action, argparse._StoreTrueAction) else not flag_set  # noqa: SLF001
    if isinstance(action, argparse._AppendAction):  # noqa: SLF001
        if from_env:
            items = [item.strip() for item in str(value).split(",") if item.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert_one(action, item, where) for item in items]
    return _convert_one(action, value, where)


def read_file(path: str | os.PathLike, known: Mapping[str, argparse.Action]) -> dict[str, Any]:
    """The settings of a TOML file, converted; unknown keys are errors."""
    try:
        with open(path, "rb") as source:
            document = tomllib.load(source)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    values: dict[str, Any] = {}
    unknown = []
    for key, value in document.items():
        name = key.replace("-", "_")
        if name not in known:
            unknown.append(key)
            continue
        values[name] = convert(known[name], value, f"config file {path}: {key}")
    if unknown:
        hint = ""
        if any(env_name(k.replace("-", "_")) in SECRET_ENV for k in unknown):
            hint = " (the admin key is read from $QROUTE_ADMIN_KEY or the data dir, never from a file)"
        raise ConfigError(f"config file {path}: unknown setting{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(sorted(unknown))}{hint}; known: {', '.join(sorted(known))}")
    return values


def read_env(environ: Mapping[str, str], known: Mapping[str, argparse.Action]) -> dict[str, Any]:
    """The settings set in the environment (``QROUTE_<NAME>``), converted."""
    values = {}
    for name, action in known.items():
        variable = env_name(name)
        if variable in environ:
            values[name] = convert(action, environ[variable], f"${variable}", from_env=True)
    return values


def _flag_given(action: argparse.Action, argv: Sequence[str]) -> bool:
    return any(arg == option or arg.startswith(option + "=")
               for arg in argv for option in action.option_strings)


def layer(parser: argparse.ArgumentParser, argv: Sequence[str],
          environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Make the file (``--config`` in ``argv``, else ``$QROUTE_CONFIG``) and
    the environment the defaults of ``parser``; the flags in ``argv`` parsed
    afterwards override them. Returns each layered setting's source
    ("file PATH" or "env $NAME"); raises ConfigError."""
    environ = os.environ if environ is None else environ
    known = settings(parser)
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config")
    path = probe.parse_known_args(list(argv))[0].config or environ.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path:
        for name, value in read_file(path, known).items():
            values[name], sources[name] = value, f"file {path}"
    for name, value in read_env(environ, known).items():
        values[name], sources[name] = value, f"env ${env_name(name)}"
    for name in list(values):
        # a repeatable flag would add to its default list: given on the command line, it replaces it
        if isinstance(known[name], argparse._AppendAction) and _flag_given(known[name], argv):  # noqa: SLF001
            del values[name], sources[name]
    if values:
        parser.set_defaults(**values)
    parser.set_defaults(config=path)
    return sources


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def mask(secret: str) -> str:
    """A secret as it may be shown: its key id at most, never the secret."""
    if secret.startswith("qr_") and secret.count("_") >= 2:
        return secret[:secret.index("_", 3) + 1] + "****"
    return "****"


def show(base: argparse.ArgumentParser, layered: argparse.ArgumentParser, args: argparse.Namespace,
         sources: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str:
    """The effective settings as TOML, each with where it came from; secrets
    masked. ``base`` has the flags' own defaults, ``layered`` the defaults
    ``layer`` made of the file and the environment."""
    environ = os.environ if environ is None else environ
    lines = [f"# effective settings of qroute serve (config file: {getattr(args, 'config', None) or 'none'})"]
    for name in settings(base):
        value = getattr(args, name, None)
        if name in sources:
            source = sources[name] if value == layered.get_default(name) else "flag"
        else:
            source = "default" if value == base.get_default(name) else "flag"
        if value is None:
            lines.append(f"# {name} is not set  ({source})")
        else:
            lines.append(f"{name} = {_shown(value)}  # {source}")
    for variable in SECRET_ENV:
        name = variable[len(ENV_PREFIX):].lower()
        if environ.get(variable):
            lines.append(f'# {name} = "{mask(environ[variable])}"  (env ${variable}, masked)')
        else:
            lines.append(f"# {name}: not in the environment; read from (or generated in) DATA_DIR/admin.key")
    return "\n".join(lines) + "\n"
