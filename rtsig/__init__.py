"""rtsig: a real-time trading-signal engine for Binance market data.

The public surface is small: :class:`Settings`, the strategy registry and the error tree.
Everything else is reached through the ``rtsig`` command (``rtsig --help``).
"""

from rtsig import _jitcache  # noqa: F401  (first: sets Numba's cache directory)
from rtsig.errors import InputError, LayoutMismatch, RtsigError, SettingsError, StoreError, StoreInUse

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "LayoutMismatch",
    "RtsigError",
    "SettingsError",
    "StoreError",
    "StoreInUse",
    "__version__",
]
