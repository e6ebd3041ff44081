"""The chain term exactly as it was written before it moved onto the expected-streak family (test reference)."""
import torch


def chain_reference(chunk):
    lp = chunk.label_logp.masked_fill(~chunk.mask, float("-inf"))
    R = torch.exp(torch.cumsum(lp, dim=1)).sum(dim=1) / chunk.mask.shape[1]
    valid = chunk.block_valid & chunk.mask.any(dim=1)
    return -(R * valid).sum(), valid.sum().float()
