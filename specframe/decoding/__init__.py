"""Real speculative decoding: the engine (engine.py), draft sources (drafts.py), the verify tree (tree.py), the
target's KV cache (target_cache.py) and the lossless verification rules (sampling.py).

Nothing is imported here on purpose: specframe.alignment's decode strategies import sampling.py, and the engine
imports specframe.alignment; keeping this file empty keeps that cycle-free.
"""
