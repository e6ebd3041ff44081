"""Real speculative decoding: the engine (engine.py), draft sources (drafts.py), the verify tree (tree.py), the
target's KV cache (target_cache.py), the lossless verification rules (sampling.py) and the registry of decode
strategies (strategies/). Nothing is imported here, so that importing one part does not load the others.
"""
