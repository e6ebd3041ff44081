"""The target-feature cache: training from it equals training online; mismatched or unfinished caches are refused."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from specframe.resources import prepare_recipe
from specframe.data.datamodule import ChatDataModule
from specframe.config import DataConfig
from specframe.data.feature_cache import (MANIFEST, FeatureCache, build_cache, cache_provides, data_fingerprint,
                                          read_manifest, shard_name)
from specframe.errors import ConfigError
from specframe.targets import TARGETS


@pytest.fixture
def chats(tmp_path: Path, conversations) -> Path:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return path


@pytest.fixture
def make(tmp_path: Path, chats: Path, recipe_factory):
    """recipe dict on the tiny target reading `chats`; keyword arguments update sections."""
    def _make(**sections: dict[str, Any]) -> dict[str, Any]:
        data = {"train": str(chats), **sections.pop("data", {})}
        return recipe_factory(tmp_path / "run", data=data, **sections)
    return _make


def _losses(recipe_dict: dict[str, Any], steps: int, forbid_target: bool = False) -> list[torch.Tensor]:
    """Losses of the first `steps` optimiser steps of a fresh module (same init and batches for the same seed)."""
    from specframe.module import DraftTrainingModule

    recipe = prepare_recipe(recipe_dict)
    torch.manual_seed(0)
    module = DraftTrainingModule(recipe.resolved)
    if forbid_target:  # training from a cache must not run the target's forward pass
        module.target.forward = lambda *a, **k: (_ for _ in ()).throw(AssertionError("target ran"))
    data = ChatDataModule(recipe.data, module.target.tokenizer, seed=recipe.run.seed)
    data.setup("fit")
    opt = module.configure_optimizers()["optimizer"]
    out = []
    loader = data.train_dataloader()

    def epochs():  # the tiny data holds two batches: go round, reshuffled by epoch as Lightning does
        for epoch in range(steps):
            loader.sampler.set_epoch(epoch)
            yield from loader

    batches = epochs()
    for step in range(steps):
        loss, _, _ = module.step(next(batches), torch.Generator().manual_seed(step))
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.detach())
    return out


def test_training_from_the_cache_gives_the_online_losses(make, tmp_path: Path, tiny_target) -> None:
    online = make()
    manifest = build_cache(prepare_recipe(online), tmp_path / "cache", dtype="float32", shard_size=3,
                           target=tiny_target)
    assert manifest["rows"] == {"train": 4, "val": 2, "total": 6}
    assert len(manifest["shards"]) == 2 and (tmp_path / "cache" / MANIFEST).is_file()
    # float32 features: 4 bytes per feature per token, plus a little (token ids, offsets, headers)
    F = tiny_target.hidden_size * len(tiny_target.tap_layers)
    assert 4 * F <= manifest["bytes_per_token"] < 4 * F + 16
    assert manifest["bytes_per_supervised_token"] > manifest["bytes_per_token"]
    assert cache_provides(tmp_path / "cache") == {"target_hidden"}

    cached = make(data={"features_cache": str(tmp_path / "cache")})
    expected = _losses(online, 2)
    got = _losses(cached, 2, forbid_target=True)
    torch.testing.assert_close(torch.stack(got), torch.stack(expected))
    assert expected[0] != expected[1]  # the second loss follows an optimiser step on other data


def test_bf16_cache_is_default_and_half_the_size(make, tmp_path: Path, tiny_target) -> None:
    m32 = build_cache(prepare_recipe(make()), tmp_path / "c32", dtype="float32", target=tiny_target)
    m16 = build_cache(prepare_recipe(make()), tmp_path / "c16", target=tiny_target)
    assert m16["dtype"] == "bfloat16"
    assert m16["bytes_per_token"] < 0.6 * m32["bytes_per_token"]
    c16, c32 = FeatureCache(tmp_path / "c16"), FeatureCache(tmp_path / "c32")
    assert len(c16) == len(c32) == 6
    for index in range(6):
        f16, f32 = c16.row(index)["features"], c32.row(index)["features"]
        assert f16.dtype == torch.bfloat16 and f32.dtype == torch.float32 and f16.shape == f32.shape
        torch.testing.assert_close(f16.float(), f32, rtol=1e-2, atol=1e-2)


def test_topk_logits_feed_distillation_terms(make, tmp_path: Path, tiny_target) -> None:
    loss = [{"name": "ce", "weight": 1.0}, {"name": "forward_kl", "weight": 1.0, "top_k": 4}]
    build_cache(prepare_recipe(make()), tmp_path / "nologits", dtype="float32", target=tiny_target)
    with pytest.raises(ConfigError, match=r"forward_kl' needs target_logits.*--logits-topk"):
        prepare_recipe(make(loss=loss, data={"features_cache": str(tmp_path / "nologits")}))

    m = build_cache(prepare_recipe(make()), tmp_path / "topk", dtype="float32", logits_topk=4, target=tiny_target)
    assert cache_provides(tmp_path / "topk") == {"target_hidden", "target_logits", "target_greedy"}
    assert 0 < m["mean_topk_mass"] < 1
    expected = _losses(make(loss=loss), 1)
    got = _losses(make(loss=loss, data={"features_cache": str(tmp_path / "topk")}), 1, forbid_target=True)
    torch.testing.assert_close(torch.stack(got), torch.stack(expected))


def test_a_cache_for_another_recipe_is_refused_with_every_mismatch(make, tmp_path: Path, tiny_target) -> None:
    build_cache(prepare_recipe(make()), tmp_path / "cache", target=tiny_target)
    bad = make(data={"features_cache": str(tmp_path / "cache"), "max_length": 120},
               run={"seed": 1}, target={"name": "tiny", "seed": 3})
    with pytest.raises(ConfigError) as e:
        prepare_recipe(bad)
    text = str(e.value)
    assert "data.max_length=160, this recipe has data.max_length=120" in text
    assert "run.seed=0, this recipe has run.seed=1" in text
    assert "target.seed=0, this recipe has target.seed=3" in text
    # options that do not change the features, and the batch shape, are not mismatches
    prepare_recipe(make(data={"features_cache": str(tmp_path / "cache"), "batch_size": 3, "num_anchors": 2}))
    # another training seed on the cache's split (data.split_seed) is not a mismatch either
    prepare_recipe(make(data={"features_cache": str(tmp_path / "cache"), "split_seed": 0}, run={"seed": 5}))
    with pytest.raises(ConfigError, match="data.split_seed"):
        prepare_recipe(make(data={"features_cache": str(tmp_path / "cache"), "split_seed": 2}))


def test_an_answers_file_is_compared_by_content_not_by_path(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "answers.jsonl.gz", tmp_path / "b" / "answers.jsonl.gz"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"the same answers")
    a, b = (data_fingerprint(DataConfig(answers=str(p)), 0) for p in (first, second))
    assert a == b and a["answers"].startswith("sha256:")  # another clone's copy matches
    second.write_bytes(b"regenerated answers")
    assert data_fingerprint(DataConfig(answers=str(second)), 0)["answers"] != a["answers"]  # a rewritten one does not
    assert data_fingerprint(DataConfig(answers="missing.jsonl.gz"), 0)["answers"] == "missing.jsonl.gz"


def test_split_seed_fixes_the_held_out_rows_across_training_seeds(make, tiny_target) -> None:
    def rows(run_seed: int, split_seed: int | None) -> tuple[list[Any], list[Any]]:
        recipe = prepare_recipe(make(data={"split_seed": split_seed, "val_conversations": 3}, run={"seed": run_seed}))
        dm = ChatDataModule(recipe.data, tiny_target.tokenizer, seed=recipe.run.seed)
        dm.setup("fit")
        return [r["input_ids"] for r in dm.train_rows], [r["input_ids"] for r in dm.val_rows]

    assert rows(0, None) != rows(1, None)  # by default the split follows run.seed ...
    assert rows(0, 7) == rows(1, 7) == rows(2, 7)  # ... data.split_seed pins it


def test_another_tokenizer_is_refused_before_training(make, tmp_path: Path, tiny_target) -> None:
    build_cache(prepare_recipe(make()), tmp_path / "cache", target=tiny_target)
    manifest = json.loads((tmp_path / "cache" / MANIFEST).read_text())
    manifest["tokenizer_sha256"] = "0" * 64
    (tmp_path / "cache" / MANIFEST).write_text(json.dumps(manifest))
    recipe = prepare_recipe(make(data={"features_cache": str(tmp_path / "cache")}))
    data = ChatDataModule(recipe.data, tiny_target.tokenizer, seed=0)
    with pytest.raises(ConfigError, match="another tokenizer"):
        data.setup("fit")


def test_an_interrupted_cache_is_refused_then_resumed(make, tmp_path: Path) -> None:
    target = TARGETS.build("tiny", {})
    recipe = prepare_recipe(make())
    calls = {"n": 0}
    forward = target.forward

    def dies_on_the_second_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    target.forward = dies_on_the_second_shard
    folder = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):  # shard_size == batch_size: one forward per shard
        build_cache(recipe, folder, shard_size=2, batch_size=2, target=target)
    assert (folder / shard_name(0)).is_file() and not (folder / shard_name(1)).exists()
    assert not (folder / MANIFEST).exists()
    with pytest.raises(ConfigError, match="unfinished cache"):
        cache_provides(folder)
    with pytest.raises(ConfigError, match="unfinished cache"):
        prepare_recipe(make(data={"features_cache": str(folder)}))
    # another setting into the same folder is refused, not mixed with the finished shard
    with pytest.raises(ConfigError, match="dtype"):
        build_cache(recipe, folder, shard_size=2, batch_size=2, dtype="float32", target=target)

    first = (folder / shard_name(0)).stat().st_mtime_ns
    calls["n"] = 10
    m = build_cache(recipe, folder, shard_size=2, batch_size=2, target=target)
    assert calls["n"] == 12  # only the two missing shards ran
    assert (folder / shard_name(0)).stat().st_mtime_ns == first
    assert m["rows"]["total"] == 6 and read_manifest(folder)["tokens"] == m["tokens"]
    fresh = build_cache(recipe, tmp_path / "fresh", shard_size=2, batch_size=2, target=TARGETS.build("tiny", {}))
    assert [s["bytes"] for s in fresh["shards"]] == [s["bytes"] for s in m["shards"]]
    prepare_recipe(make(data={"features_cache": str(folder)}))


def test_cli_prints_bytes_per_token(make, tmp_path: Path, capsys) -> None:
    from specframe.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(make()))
    out = tmp_path / "cache"
    assert main(["cache-features", str(recipe), "data.max_length=100", "--out", str(out), "--shard-size", "4"]) == 0
    printed = capsys.readouterr().out
    m = read_manifest(out)
    assert m["data"]["max_length"] == 100 and m["dtype"] == "bfloat16" and len(m["shards"]) == 2
    assert f"{m['bytes_per_token']:,.0f} bytes/token" in printed
    assert f"{m['bytes_per_supervised_token']:,.0f} bytes/supervised token" in printed
    assert main(["cache-features", str(recipe), "data.max_length=100", "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    # a different recipe into a finished cache folder is an error, not an overwrite
    assert main(["cache-features", str(recipe), "data.max_length=90", "--out", str(out)]) == 2
    assert "max_length" in capsys.readouterr().err


@pytest.mark.slow
def test_specframe_train_runs_from_the_cache(make, tmp_path: Path, tiny_target, conversations) -> None:
    """End to end through `train()`: the cached run logs the online run's losses and ends at its τ_sim."""
    import csv

    from specframe.training import train

    build_cache(prepare_recipe(make()), tmp_path / "cache", dtype="float32", target=tiny_target)
    results = []
    for name, extra in (("online", {}), ("cached", {"features_cache": str(tmp_path / "cache")})):
        recipe = prepare_recipe(make(run={"output_dir": str(tmp_path / name)}, data=extra,
                                      trainer={"max_steps": 3}))
        summary = train(recipe)
        rows = list(csv.DictReader(open(tmp_path / name / "logs" / "metrics.csv")))
        losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
        results.append((summary, losses))
    (on, on_losses), (ca, ca_losses) = results
    assert len(on_losses) == 3
    torch.testing.assert_close(torch.tensor(ca_losses), torch.tensor(on_losses))
    assert ca["tau_sim_after"] == pytest.approx(on["tau_sim_after"], abs=1e-5)
