"""`drafter.init_from`: a DFlash drafter built and saved by the reference imports with identical outputs, trains
with the paper's loss stack, and an incompatible one is refused by `specframe validate` with the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

dflash_model = pytest.importorskip("dflash.model", reason="reference: pip install --no-deps dflash==0.1.0")

from transformers import Qwen3Config  # noqa: E402

from specframe.cli import main  # noqa: E402
from specframe.config import compose  # noqa: E402
from specframe.decoding.drafts import BlockDrafterSource  # noqa: E402
from specframe.errors import ConfigError  # noqa: E402
from specframe.module import DraftTrainingModule  # noqa: E402
from specframe.resources import prepare_recipe  # noqa: E402

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_target) -> Path:
    """A drafter for the tiny target as the reference builds it: random weights, saved with save_pretrained."""
    spec = tiny_target.spec
    config = Qwen3Config(hidden_size=spec.hidden_size, num_attention_heads=spec.num_heads,
                         num_key_value_heads=spec.num_kv_heads, head_dim=spec.head_dim,
                         intermediate_size=spec.intermediate_size, num_hidden_layers=2, vocab_size=spec.vocab_size,
                         rms_norm_eps=spec.rms_norm_eps, rope_theta=spec.rope_theta, max_position_embeddings=4096)
    config.architectures = ["DFlashDraftModel"]
    config.num_target_layers = spec.num_layers
    config.block_size = 8
    config.dflash_config = {"mask_token_id": spec.mask_row, "target_layer_ids": list(spec.tap_layers)}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = dflash_model.DFlashDraftModel(config)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                p.copy_(1.0 + 0.3 * torch.randn_like(p)) if p.dim() == 1 else p.normal_(0, 0.15)
    folder = tmp_path_factory.mktemp("published") / "tiny-dflash"
    ref.save_pretrained(folder)
    return folder


def recipe(tmp_path: Path, published: Path, *overrides: str):
    return prepare_recipe(compose(RECIPES / "quickstart.yaml", [RECIPES / "debug" / "tiny.yaml"],
                                   [f"run.output_dir={tmp_path / 'run'}", f"+drafter.init_from={published}",
                                    "drafter.num_layers=2", *overrides]))


@torch.no_grad()
def test_reference_built_drafter_imports_with_identical_outputs(tmp_path, published, tiny_target) -> None:
    module = DraftTrainingModule(recipe(tmp_path, published).resolved)
    ref = dflash_model.DFlashDraftModel.from_pretrained(published, dtype=torch.float32).eval()
    drafter, target = module.drafter.eval(), module.target
    assert drafter.mask_token_id == ref.mask_token_id and drafter.block_size == ref.block_size == 8
    ids = torch.randint(3, target.vocab_size, (1, 13), generator=torch.Generator().manual_seed(1))
    feats = target(ids, torch.ones_like(ids)).hidden[:, :12]
    src = BlockDrafterSource(drafter, target)
    src.start(feats)
    ours = src.draft(int(ids[0, 12]), 12, 8)
    block = torch.full((1, 8), ref.mask_token_id)
    block[0, 0] = ids[0, 12]
    hidden = ref(target_hidden=feats, noise_embedding=target.embed(block), position_ids=torch.arange(20)[None])
    theirs = ref.compute_logits(hidden[:, 1:], target.model.get_output_embeddings())[0]
    diff = (ours - theirs).abs().max().item()
    print(f"\nreference-built checkpoint imported: max |logit difference| {diff:.3e}")
    assert diff <= 1e-5 and ours.abs().max() > 0.1


def test_imported_drafter_trains_with_the_papers_stack(tmp_path, published, conversations) -> None:
    from safetensors.torch import load_file

    from specframe.training import train

    r = recipe(tmp_path, published, "trainer.max_steps=2")
    assert [t.name for t in r.loss] == ["positional", "first_error_focal", "chain"]
    summary = train(r, conversations=conversations)
    assert summary["steps"] == 2
    start = load_file(published / "model.safetensors")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    moved = (ckpt["drafter.fc.weight"] - start["fc.weight"]).abs().max()
    assert 0 < moved < 0.1  # trained from the published weights, not from a fresh init


def test_validate_refuses_an_incompatible_checkpoint(tmp_path, published, capsys) -> None:
    with pytest.raises(ConfigError) as e:
        recipe(tmp_path, published, "drafter.num_layers=1", "drafter.block_size=4", "+target.hidden_size=32",
               "+drafter.qk_norm=false")
    text = str(e.value)
    for fix in ("set drafter.num_layers: 2", "set drafter.block_size: 8", "hidden_size is 64 in the published drafter but 32 here",
                "set drafter.qk_norm: true"):
        assert fix in text, fix
    code = main(["validate", str(RECIPES / "quickstart.yaml"), str(RECIPES / "debug" / "tiny.yaml"),
                 f"run.output_dir={tmp_path / 'v'}", f"+drafter.init_from={published}", "+drafter.mask_token_id=3"])
    err = capsys.readouterr().err
    assert code == 2 and "mask token is the target's row 259, this recipe's is 3" in err
    assert "set drafter.num_layers: 2" in err  # every mismatch at once
