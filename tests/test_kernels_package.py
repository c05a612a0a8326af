"""The kernels package: its exports, the warm-up that compiles every variant the service uses,
and the guard that keys Numba's cache by every source file jitted code depends on."""

from __future__ import annotations

import os
from pathlib import Path

import kernels


def test_public_names():
    assert set(kernels.__all__) == {"orderbook_skew", "trade_momentum", "ticker_velocity",
                                    "btc_dominance", "cross_exchange_spread", "onchain_metrics",
                                    "microprice", "ofi_record", "order_flow_imbalance",
                                    "trade_flow_imbalance", "warm_up"}
    for name in kernels.__all__:
        assert callable(getattr(kernels, name))


def test_warm_up_compiles_writable_and_read_only_variants():
    kernels.warm_up()
    for kernel in (kernels.orderbook_skew, kernels.trade_momentum, kernels.ticker_velocity,
                   kernels.microprice, kernels.trade_flow_imbalance):
        readonly = [sig[0].mutable for sig in kernel.signatures]
        assert True in readonly and False in readonly, kernel


def test_jit_cache_is_keyed_by_every_source_file(tmp_path):
    """A change to the registry (not a kernel file) must select a fresh Numba cache."""
    import shutil

    from numba import config

    from rtsig import _jitcache

    root = Path(_jitcache.__file__).resolve().parents[1]
    if os.environ.get("NUMBA_CACHE_DIR") == os.environ.get(_jitcache.OURS):  # not the operator's
        assert config.CACHE_DIR == str(root / ".numba_cache" / _jitcache.source_hash(root))
    for package in ("rtsig", "kernels", "workers"):
        shutil.copytree(root / package, tmp_path / package)
    before = _jitcache.source_hash(tmp_path)
    assert before == _jitcache.source_hash(root)
    registry = tmp_path / "rtsig" / "registry.py"
    registry.write_text(registry.read_text() + "\n# changed\n")
    assert _jitcache.source_hash(tmp_path) != before
