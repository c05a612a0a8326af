"""The feeds of the market-logic strategies (docs/CONTRACT.md §2c) and their adapters.

* :mod:`rtsig.feeds.messages` — one documented JSON body per feed, validated (bytes in, a record
  or a counted reason out; no I/O).
* :mod:`rtsig.feeds.path` — the ingest's side: a feed message → the store's feed rings and an
  event for the worker that owns its symbol; USD-M futures books → quotes of the spread strategy.
  The live ingest and ``rtsig signals`` run exactly this code, in arrival order with market data.
* :mod:`rtsig.feeds.dominance`, :mod:`rtsig.feeds.quotes`, :mod:`rtsig.feeds.onchain` — the
  adapters behind ``rtsig feed dominance|quotes|onchain``: small processes that read a public
  source and publish those bodies on NATS (:mod:`rtsig.feeds.adapter` has what they share).
"""
