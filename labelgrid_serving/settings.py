"""Settings from the environment, read the same way by both servers."""

from __future__ import annotations

import math

from labelgrid_serving.security import ConfigError


def parse_env(text: str, default: object, variable: str) -> object:
    """`text` (the value of environment variable `variable`) as the type of `default`; a
    value that does not parse is a ConfigError naming the variable (the CLI prints it as one
    line, not a traceback)."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{variable}={text!r} is not a boolean")
    try:
        value = type(default)(text)
    except ValueError:
        raise ConfigError(f"{variable}={text!r} is not a valid value") from None
    # every numeric setting is a size, a count or seconds
    if isinstance(value, int | float) and not 0 <= value < math.inf:
        raise ConfigError(f"{variable}={text!r}: give a number of 0 or more")
    return value
