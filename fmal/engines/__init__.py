"""Where the embedding pass runs. Every engine fills the same chunks of the same store
(``fmal.store``), so a pool is the same whichever engine built it.

- ``local``: chunk after chunk in this process (``fmal.store.LocalEngine``).
- ``ray``: a Ray Data pipeline with a pool of encoder actors, on a local Ray or a cluster
  (``fmal.engines.ray_engine.RayEngine``); needs the ``ray`` extra.
"""

ENGINES = ("local", "ray")

__all__ = ["ENGINES"]
