"""Evaluation by real decoding: benchmarks (benchmarks.py), the runner (runner.py), train/serve parity
(parity.py), the `specframe eval` command (cli.py) and the training callback that logs `val/tau_real`
(callback.py). See docs/evaluation.md for what every number means."""
