"""Where the embedding pass runs. Every engine builds the same pool (``fmal.pool.write`` writes it), so
a pool is the same whichever engine built it.

- ``local``: this process reads the input and embeds it chunk after chunk (``fmal.pool.build.build_pool``).
- ``ray``: a Ray Data pipeline reads the input shard by shard on Ray workers and embeds it with a
  pool of encoder actors, on a local Ray or a cluster (``fmal.engines.ray_engine.RayEngine``);
  resumable per shard; needs the ``ray`` extra.
"""

ENGINES = ("local", "ray")

__all__ = ["ENGINES"]
