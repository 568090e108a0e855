"""User-facing errors: one line naming the key, the value given and what is accepted."""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional


class ConfigError(Exception):
    """A bad input the user can fix. Printed as one line, no traceback, exit status 2."""

    def __init__(self, key: str, value: Any, accepted: str, reason: Optional[str] = None):
        self.key, self.value, self.accepted, self.reason = key, value, accepted, reason
        what = f"{reason}; " if reason else ""
        super().__init__(f"{key}={value!s}: {what}accepted: {accepted}")


def as_config_error(error: ValueError) -> ConfigError:
    """A ValueError from a library-level check whose message already names key, value and range."""
    err = ConfigError.__new__(ConfigError)
    Exception.__init__(err, str(error))
    err.key = err.value = err.accepted = err.reason = None
    return err


def one_of(options: Iterable[str]) -> str:
    return "one of " + ", ".join(sorted(options))


def check_choice(key: str, value: str, options: Iterable[str]) -> str:
    options = list(options)
    if value not in options:
        raise ConfigError(key, value, one_of(options), "unknown option")
    return value


def check_positive(key: str, value: Any, allow_zero: bool = False) -> Any:
    """value > 0 (>= 0 with allow_zero), and finite: nan and inf are refused too."""
    not_finite = isinstance(value, float) and not math.isfinite(value)
    if value is None or not_finite or (value < 0 if allow_zero else value <= 0):
        kind = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a finite number"
        raise ConfigError(key, value, f"{kind} >= 0" if allow_zero else f"{kind} > 0")
    return value
