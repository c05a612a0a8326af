"""The package's exception tree.

    RtsigError                      base of everything rtsig raises on purpose
    ├── SettingsError (ValueError)  a setting or parameter value is not acceptable
    ├── StoreError (RuntimeError)   the shared-memory store cannot be created or attached
    │   ├── StoreInUse              a live instance already owns the segment name
    │   └── LayoutMismatch          the segment was made by another layout version or size
    ├── InputError (ValueError)     recorded or published market data that cannot be read at all
    └── ConfigError                 a configuration change or lookup the config service refuses
        ├── ConfigNotFound (KeyError)            unknown strategy, symbol, version or config
        ├── ConfigInvalid (ValueError)           bad parameters: one message per field
        ├── VersionConflict                      ``expected_version`` is not the stored version
        └── StoreUnavailable (ConnectionError)   the config store cannot be written (or read)

Each subclass also derives from the builtin it resembles, so callers that only know the
standard library (``except ValueError``) still catch it.
"""

from __future__ import annotations


class RtsigError(Exception):
    """Base class of every error rtsig raises deliberately."""


class SettingsError(RtsigError, ValueError):
    """A setting (environment variable, CLI override or stored parameter) is invalid.

    ``str(err)`` is one line naming the variable, the value and what is accepted: it is what
    start-up prints before exiting.
    """

    def __init__(self, name: str, value: object, accepted: str) -> None:
        self.name = name
        self.value = value
        self.accepted = accepted
        super().__init__(f"{name}={value!r} is invalid: expected {accepted}")


class StoreError(RtsigError, RuntimeError):
    """The shared-memory store cannot be created, attached or used."""


class StoreInUse(StoreError):
    """The segment name is owned by a process that is still alive."""


class LayoutMismatch(StoreError):
    """An existing segment was laid out by a different version or with different sizes."""


class InputError(RtsigError, ValueError):
    """An input file or stream cannot be read as market data at all."""


class ConfigError(RtsigError):
    """A configuration lookup or change the config service refuses (HTTP 4xx/503)."""


class ConfigNotFound(ConfigError, KeyError):
    """An unknown strategy or symbol, or a configuration or version that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigInvalid(ConfigError, ValueError):
    """Parameters that fail validation; ``errors`` has one message per bad field."""

    def __init__(self, message: str, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(message)


class VersionConflict(ConfigError):
    """The stored version is not the one the change was based on (optimistic concurrency)."""

    def __init__(self, message: str, current_version: int) -> None:
        self.current_version = current_version
        super().__init__(message)


class StoreUnavailable(ConfigError, ConnectionError):
    """The configuration store cannot be reached; a write is refused rather than half-done."""
