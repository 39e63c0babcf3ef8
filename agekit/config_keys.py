"""Settings by dotted key (``optim.lr``): get and set them, overrides, plain dicts and TOML files.

The keys are those of :class:`agekit.config.Config`. ``agekit.config`` re-exports every name here (``from agekit.config import apply_overrides``);
this module holds how settings are addressed and stored, ``agekit.config`` what they are.

Taught in ``notebooks/06_rapl_training.ipynb``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import sys
import typing
from pathlib import Path

from agekit._io import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# ----------------------------------------------------------------------------- dicts and keys


def _sections(cls) -> dict[str, type]:
    return {f.name: hint for f, hint in zip(dataclasses.fields(cls), typing.get_type_hints(cls).values())}


def allowed_keys(config: Config | None = None) -> list[str]:
    """Every settable dotted key, e.g. ``["data.manifest", ..., "train.stop_after"]``."""
    keys = []
    for name, hint in _sections(Config).items():
        if dataclasses.is_dataclass(hint):
            keys += [f"{name}.{sub}" for sub in _sections(hint)]
        else:
            keys.append(name)
    return keys


def _field_type(key: str):
    section, _, name = key.partition(".")
    hints = _sections(Config)
    if section not in hints:
        return None
    hint = hints[section]
    if not name:
        return None if dataclasses.is_dataclass(hint) else hint
    if not dataclasses.is_dataclass(hint):
        return None
    return _sections(hint).get(name)


def _unknown(key: str) -> ConfigError:
    """An unknown key's error: the nearest known keys, and the keys of its section (not all of them)."""
    keys = allowed_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    section = key.partition(".")[0]
    text = f"Unknown setting {key!r}."
    if close:
        text += f" Did you mean {close[0]!r}?"
    inside = [k.partition(".")[2] for k in keys if k.startswith(section + ".")]
    if inside:
        text += f" The [{section}] keys: {', '.join(inside)}."
    else:
        plain = [k for k in keys if "." not in k]
        sections = list(dict.fromkeys(k.partition(".")[0] for k in keys if "." in k))
        text += (f" Settings are {', '.join(plain)} or SECTION.KEY with SECTION one of {', '.join(sections)} "
                 "(e.g. optim.lr).")
    return ConfigError(text)


def get_value(config: Config, key: str):
    """The value at a dotted key, e.g. ``get_value(config, "optim.lr")``."""
    if _field_type(key) is None:
        raise _unknown(key)
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def set_value(config: Config, key: str, value) -> None:
    """Set a dotted key in place after checking ``value`` against the field's type."""
    hint = _field_type(key)
    if hint is None:
        raise _unknown(key)
    target = config
    *parents, name = key.split(".")
    for part in parents:
        target = getattr(target, part)
    setattr(target, name, _coerce(key, hint, value))


def _type_name(hint) -> str:
    return {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(
        hint, f"a list of {_type_name(typing.get_args(hint)[0]) if typing.get_args(hint) else 'values'}"
    )


def _coerce(key: str, hint, value):
    """``value`` (already typed, e.g. from TOML) checked and converted to the field's type."""
    wrong = ConfigError(f"Setting {key!r} must be {_type_name(hint)}, got {value!r}.")
    if typing.get_origin(hint) is list:
        if not isinstance(value, (list, tuple)):
            raise wrong
        (item,) = typing.get_args(hint)
        return [_coerce(key, item, v) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise wrong  # pragma: no cover - every field has one of the types above


def _parse_text(key: str, hint, text: str):
    """A command-line string parsed by the field's type: ``"3"``, ``"1e-4"``, ``"true"``, ``"[10, 20]"``."""
    text = text.strip()
    wrong = ConfigError(f"Setting {key!r} must be {_type_name(hint)}, got {text!r}.")
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        parts = [p for p in (s.strip() for s in inner.split(",")) if p]
        return [_parse_text(key, item, p) for p in parts]
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise wrong
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise wrong from None
    if hint is float:
        try:
            number = float(text)
        except ValueError:
            raise wrong from None
        return number
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_override(text: str) -> tuple[str, object]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 0.0001)``, typed by the field it names."""
    key, sep, raw = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"An override must look like key=value (e.g. optim.lr=1e-4), got {text!r}.")
    hint = _field_type(key)
    if hint is None:
        raise _unknown(key)
    return key, _parse_text(key, hint, raw)


def apply_overrides(config: Config, overrides) -> Config:
    """A copy of ``config`` with ``overrides`` applied: ``["key=value", ...]`` or ``{"key": value}``.

    Strings in the list form are parsed by the field's type; values in the dict form
    are checked against it. Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    config = copy.deepcopy(config)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for key, value in items:
        set_value(config, key, value)
    return config


def config_to_dict(config: Config) -> dict:
    """A plain nested dict of str, int, float, bool and lists (for TOML, JSON and checkpoints)."""
    return dataclasses.asdict(config)


def config_from_dict(values: dict, base: Config | None = None) -> Config:
    """Overlay a (possibly partial) nested dict on ``base``.

    Without ``base``, the dict's ``preset`` and ``method`` (default cpu, rapl) choose
    the preset to start from, so a file only needs the keys it changes.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"A configuration must be a table of settings, got {type(values).__name__}.")
    if base is None:
        name, method = values.get("preset", "cpu"), values.get("method", "rapl")
        if name == "custom":  # a saved run's values, not a preset's: every key is in the file
            _one_of("method", method, METHODS)
            base = Config(method=method, preset=name)
        else:
            base = preset(name, method)  # an unknown name is an error, never a fallback
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            if not dataclasses.is_dataclass(_sections(Config).get(key)):
                raise _unknown(key)
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    return apply_overrides(base, flat)


# ----------------------------------------------------------------------------- TOML


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # e.g. 0.001, 1e-05: both valid TOML floats
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are a subset of TOML's basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"Cannot write {type(value).__name__} {value!r} to TOML.")


def to_toml(values: dict, prefix: str = "") -> str:
    """A nested dict of plain values as TOML text: scalars first, then one table per sub-dict."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items() if not isinstance(value, dict)]
    for key, value in values.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            lines += ["", f"[{name}]", to_toml(value, prefix=f"{name}.").rstrip("\n")]
    return "\n".join(lines).lstrip("\n") + "\n"


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :mod:`agekit._io`)."""
    return atomic_write_text(path, text)


def save_config(config: Config, path) -> Path:
    """Write ``config`` as TOML (atomically). Taught in ``notebooks/06_rapl_training.ipynb``."""
    header = "# agekit training configuration; load with agekit.config.load_config or `agekit train --config`\n"
    return write_text_atomic(path, header + to_toml(config_to_dict(config)))


def read_toml(path) -> dict:
    """The nested dict of a TOML settings file (not yet checked against :class:`Config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}.") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text ({error.reason}); save it as UTF-8.") from None


def load_config(path, base: Config | None = None) -> Config:
    """Read a TOML file (complete or partial) into a checked :class:`Config`.

    Taught in ``notebooks/06_rapl_training.ipynb``.
    """
    return config_from_dict(read_toml(path), base).validate()


# at the end: agekit.config imports this module at its own end, so either may be imported first
from agekit.config import METHODS, Config, ConfigError, _one_of, preset  # noqa: E402
