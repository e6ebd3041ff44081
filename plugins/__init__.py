"""Worked examples of specframe plugins: components registered from outside the package.

Each sub-package registers its entries when imported. A recipe loads one with `plugins: [plugins.label_smoothing]`
(run from the repository root), the CLI with `--plugin plugins.label_smoothing`. specframe never imports this
folder: plugins depend on specframe, never the reverse. See docs/extending.md.
"""
