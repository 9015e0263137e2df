"""Settings from the environment, read the same way by both servers."""

from __future__ import annotations


def parse_env(text: str, default: object, variable: str) -> object:
    """`text` (the value of environment variable `variable`) as the type of `default`; a
    value that does not parse is a ValueError naming the variable."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{variable}={text!r} is not a boolean")
    try:
        return type(default)(text)
    except ValueError:
        raise ValueError(f"{variable}={text!r} is not a valid value") from None
