"""Sweeps: one base recipe crossed with a grid of overrides (the library half of `python tools/sweep.py`).

grid.py expands a grid file and `key=v1,v2` axes into named points and validates every point exactly as
`specframe train` would; run.py trains and evaluates the points in subprocesses, resumably; results.py
aggregates them into results.md, results.csv and results.png. docs/sweeps.md is the user guide.
"""
