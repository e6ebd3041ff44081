"""Parity with the reference implementation (`dflash==0.1.0`, installed --no-deps by tools/install.sh).

An exported drafter loaded by `dflash.DFlashDraftModel.from_pretrained` must give the draft logits ours gives
on the same target features and block (float32, max |diff| <= 1e-5): several layers, GQA, q/k norm, a frozen
row and a learned mask (fed the way vLLM substitutes it). And a drafter the reference builds and saves
imports into specframe with the same outputs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

dflash_model = pytest.importorskip("dflash.model", reason="reference: pip install --no-deps dflash==0.1.0")

from specframe.checkpoint import load_trained  # noqa: E402
from specframe.decoding.drafts import BlockDrafterSource  # noqa: E402
from specframe.export.writer import export_dflash  # noqa: E402

S = 11  # context positions before the anchor


def features_and_anchor(target, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, target.vocab_size, (1, S + 1), generator=g)
    feats = target(ids, torch.ones_like(ids)).hidden  # [1, S+1, F] real tapped features of the target
    return feats[:, :S], int(ids[0, S])


def ours(drafter, target, feats, anchor, B):
    src = BlockDrafterSource(drafter, target)
    src.start(feats)
    return src.draft(anchor, S, B)  # [B-1, V]


def reference(ref, target, feats, anchor, B, mask_vector=None):
    ids = torch.full((1, B), ref.mask_token_id, dtype=torch.long)
    ids[0, 0] = anchor
    noise = F.embedding(ids, target.model.get_input_embeddings().weight)
    if mask_vector is not None:  # vLLM: the learned vector wherever mask_token_id appears in the draft input
        noise[0, 1:] = mask_vector
    hidden = ref(target_hidden=feats, noise_embedding=noise, position_ids=torch.arange(S + B).unsqueeze(0))
    return ref.compute_logits(hidden[:, 1:], target.model.get_output_embeddings())[0]


@pytest.mark.parametrize("options, engine", [
    ({"num_layers": 3}, "reference"),  # frozen row (auto), GQA (tiny: 4 heads, 2 kv heads), q/k norm
    ({"num_layers": 2, "mask_token": "learned"}, "vllm"),
    ({"num_layers": 1, "num_kv_heads": 1, "intermediate_size": 96, "mask_token_id": "<|im_start|>",
      "init_layers_from_target": False}, "sglang"),  # narrower than the target: no top layer to start from
])
@torch.no_grad()
def test_exported_drafter_gives_our_logits_in_the_reference(run_factory, tmp_path, options, engine) -> None:
    run = run_factory(**options)
    out = tmp_path / "export"
    export_dflash(run, out, engine=engine)
    _, target, drafter, _ = load_trained(run)
    ref = dflash_model.DFlashDraftModel.from_pretrained(out, dtype=torch.float32).eval()
    assert ref.target_layer_ids == list(target.tap_layers) and ref.block_size == drafter.block_size
    B = drafter.block_size
    worst = 0.0
    for seed in range(3):
        feats, anchor = features_and_anchor(target, seed)
        a = ours(drafter, target, feats, anchor, B)
        mask_vector = None
        if drafter.mask_kind == "learned":
            mask_vector = torch.load(out / "mask_embedding.pt", weights_only=True)["embedding"]
        b = reference(ref, target, feats, anchor, B, mask_vector)
        assert a.shape == b.shape == (B - 1, target.vocab_size)
        worst = max(worst, (a - b).abs().max().item())
    print(f"\n{engine} {options}: max |logit difference| {worst:.3e} (|logits| up to {a.abs().max():.3f})")
    assert worst <= 1e-5, f"max |logit difference| {worst:.2e}"
    assert a.abs().max() > 0.1  # logits 4 orders above the tolerance: not a vacuous comparison


@torch.no_grad()
def test_learned_mask_without_the_substitution_differs(run_factory, tmp_path) -> None:
    """The substitution matters: the target's row in place of the learned vector gives other logits."""
    run = run_factory(mask_token="learned")
    export_dflash(run, tmp_path / "export", engine="vllm")
    _, target, drafter, _ = load_trained(run)
    ref = dflash_model.DFlashDraftModel.from_pretrained(tmp_path / "export", dtype=torch.float32).eval()
    feats, anchor = features_and_anchor(target)
    B = drafter.block_size
    assert (ours(drafter, target, feats, anchor, B) - reference(ref, target, feats, anchor, B)).abs().max() > 1e-3
