"""Starting the fusion layer at the scale of the target's features (`drafter.init_fusion_from_features`).

The tapped hidden states of many targets carry a few massive-activation dimensions: on SmolLM2-135M one of the
576 dimensions of the upper taps has an RMS of about 1,800 against a median of 5-15, and the top five hold
95-99% of the energy. A randomly initialised `fc` mixes that dimension into every output, and `hidden_norm`
then squashes everything else by two orders of magnitude, so the drafter starts nearly blind to the context.
Dividing each input column of `fc` by the RMS of its feature (measured on a few training rows) gives every
feature the same say at the start. It only changes initial weight values: the layer, and so the DFlash
checkpoint format, are unchanged.
"""
from __future__ import annotations

from typing import Any

import torch

from specframe.data.datamodule import pad_collate


@torch.no_grad()
def feature_rms(target: Any, rows: list[dict[str, Any]]) -> torch.Tensor:
    """Per-dimension RMS [F] of the target's tapped features over the valid positions of `rows`."""
    batch = pad_collate(rows, pad_id=0)
    valid = batch["attention_mask"]
    if "target_hidden" in batch:  # rows from a features cache: no target pass
        hidden = batch["target_hidden"]
    else:
        hidden = target(batch["input_ids"], valid).hidden
    return hidden[valid].float().pow(2).mean(0).sqrt()


@torch.no_grad()
def fit_fusion_scale(fc: torch.nn.Linear, rms: torch.Tensor) -> dict[str, float]:
    """Divide the input columns of `fc` by `rms` (floored at 1e-3 of its median); returns what it saw."""
    if rms.shape[0] != fc.weight.shape[1]:
        raise ValueError(f"feature RMS has {rms.shape[0]} dimensions, the fusion layer takes {fc.weight.shape[1]}")
    median = rms.median()
    scale = 1.0 / rms.clamp_min(1e-3 * float(median))
    scale = scale / scale.median()  # the median feature keeps its initial weights
    fc.weight.mul_(scale.to(fc.weight.dtype).unsqueeze(0))
    return {"max_rms": float(rms.max()), "median_rms": float(median),
            "top5_energy": float((rms.topk(min(5, rms.numel())).values.pow(2).sum() / rms.pow(2).sum()))}
