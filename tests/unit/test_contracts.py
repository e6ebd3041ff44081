"""Contract tests driven by the registries: every drafter, loss term, alignment and target entry, plugins included.

The repository's `plugins/*` packages (and installed `specframe.plugins` entry points) are imported at collection
time, before the registries are listed, so a new plugin gets these tests for free; with `plugins/` deleted the
built-ins are tested alone. The per-chunk loss-term contract (finite values, gradients only into the drafter's
logits, additivity over chunks) lives in tests/unit/losses/test_loss_contract.py; here each term also runs one
real training step, and divergence-type terms are checked against the target.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from specframe.alignment import ALIGNMENTS
from specframe.drafters import DRAFTERS
from specframe.interfaces import LABELS, TARGET_GREEDY, TARGET_HIDDEN, TARGET_LOGITS, AlignedBatch, SlotChunk
from specframe.losses import LOSS_TERMS
from specframe.plugins import import_plugin, import_plugins
from specframe.targets import TARGETS

REPO_ROOT = Path(__file__).resolve().parents[2]
STEP_OUTPUTS = {TARGET_LOGITS, TARGET_GREEDY, TARGET_HIDDEN, LABELS}
OFFLINE_TARGETS = {"tiny"}  # targets that build without a download (others: a meta flag `offline=True`)


def _load_repo_plugins() -> list[str]:
    folder = REPO_ROOT / "plugins"
    names = sorted(p.parent.name for p in folder.glob("*/__init__.py")) if folder.is_dir() else []
    return [import_plugin(f"plugins.{n}") for n in names] + import_plugins([])


PLUGINS = _load_repo_plugins()
DRAFTER_NAMES = DRAFTERS.names()
LOSS_NAMES = LOSS_TERMS.names()
ALIGNMENT_NAMES = ALIGNMENTS.names()
TRAIN_ALIGNMENTS = [n for n in ALIGNMENT_NAMES if ALIGNMENTS.get(n).meta.get("stage") == "train"]
TARGET_NAMES = TARGETS.names()


def test_plugins_folder_entries_are_registered() -> None:
    folder = REPO_ROOT / "plugins"
    if not folder.is_dir():
        pytest.skip("no plugins/ folder")
    assert len(PLUGINS) >= len(list(folder.glob("*/__init__.py")))


# -- drafters --------------------------------------------------------------------------------------
def _drafter_inputs(spec, B=2, S=20, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    context = torch.randn(B, S, len(spec.tap_layers) * spec.hidden_size, generator=g)
    context_valid = torch.ones(B, S, dtype=torch.bool)
    context_valid[B - 1, S - 3:] = False  # padding at the end of the last row
    anchor_embeds = torch.randn(B, N, spec.hidden_size, generator=g)
    anchors = torch.tensor([[2, 7, 8], [5, 5, 12]])[:B, :N]
    anchor_valid = torch.tensor([[True, True, True], [True, False, True]])[:B, :N]
    return context, context_valid, anchor_embeds, anchors, anchor_valid


def _as_trained(drafter, target):
    """The drafter called as the training module calls it: with the target's row when the mask token is frozen."""
    row = getattr(drafter, "mask_token_id", None)
    if row is None:
        return drafter
    mask = target.embed(torch.tensor(row))
    return lambda *args: drafter(*args, mask_embed=mask)


@pytest.mark.parametrize("name", DRAFTER_NAMES)
def test_drafter_builds_runs_and_trains_only_itself(name, tiny_target) -> None:
    spec = tiny_target.spec
    torch.manual_seed(0)
    drafter = DRAFTERS.build(name, {}, spec=spec)
    K = drafter.block_size
    context, cv, emb, anchors, av = _drafter_inputs(spec)
    out = _as_trained(drafter, tiny_target)(context, cv, emb, anchors, av)
    assert out.shape == (2, 3, K, spec.hidden_size)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    params = list(drafter.parameters())
    assert params and all(p.grad is None or torch.isfinite(p.grad).all() for p in params)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    # the drafter borrows the target's embedding and head, it does not own (or train) them
    assert not {id(p) for p in params} & {id(p) for p in tiny_target.parameters()}
    assert all(p.grad is None for p in tiny_target.parameters())


@pytest.mark.parametrize("name", DRAFTER_NAMES)
def test_drafter_sees_context_strictly_before_the_anchor(name, tiny_target) -> None:
    tiny_spec = tiny_target.spec
    torch.manual_seed(0)
    drafter = _as_trained(DRAFTERS.build(name, {}, spec=tiny_spec).eval(), tiny_target)
    context, cv, emb, anchors, av = _drafter_inputs(tiny_spec, B=1, N=1)
    anchors = torch.tensor([[9]])
    with torch.no_grad():
        out = drafter(context, cv, emb, anchors, av)
        pert = context.clone()
        pert[:, 9:] += 5.0
        torch.testing.assert_close(drafter(pert, cv, emb, anchors, av), out, atol=1e-5, rtol=0)
        pert = context.clone()
        pert[:, 8] += 5.0
        assert (drafter(pert, cv, emb, anchors, av) - out).abs().max() > 1e-4


@pytest.mark.parametrize("name", DRAFTER_NAMES)
def test_drafter_blocks_are_independent(name, tiny_target) -> None:
    tiny_spec = tiny_target.spec
    torch.manual_seed(0)
    drafter = _as_trained(DRAFTERS.build(name, {}, spec=tiny_spec).eval(), tiny_target)
    context, cv, emb, anchors, av = _drafter_inputs(tiny_spec, B=1, N=3)
    with torch.no_grad():
        together = drafter(context, cv, emb, anchors, av)
        for n in range(3):
            alone = drafter(context, cv, emb[:, n:n + 1], anchors[:, n:n + 1], av[:, n:n + 1])
            torch.testing.assert_close(together[:, n:n + 1], alone, atol=1e-5, rtol=1e-5)


# -- loss terms ------------------------------------------------------------------------------------
def _is_divergence(name: str) -> bool:
    entry = LOSS_TERMS.get(name)
    return bool(entry.meta.get("divergence", TARGET_LOGITS in getattr(entry.obj, "requires", frozenset())))


DIVERGENCE_NAMES = [n for n in LOSS_NAMES if _is_divergence(n)]


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_term_declares_known_requirements(name) -> None:
    entry = LOSS_TERMS.get(name)
    assert entry.summary
    assert entry.config is None or dataclasses.is_dataclass(entry.config)
    requires = getattr(entry.obj, "requires", None)
    assert isinstance(requires, frozenset) and requires <= STEP_OUTPUTS, requires


@pytest.fixture(scope="module")
def step_module(recipe_factory, tmp_path_factory):
    """One module whose objective each loss-term test swaps (building a target per term would be slow)."""
    from specframe.module import DraftTrainingModule

    return DraftTrainingModule(recipe_factory(tmp_path_factory.mktemp("contracts") / "run"))


@pytest.fixture(scope="module")
def step_batch(step_module, conversations):
    from specframe.data.datamodule import ChatDataModule

    data = ChatDataModule(step_module.recipe.data, step_module.target.tokenizer, conversations=conversations)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_term_trains_in_a_real_step(name, step_module, step_batch, recipe_factory, tmp_path) -> None:
    """The recipe validator accepts the term with default options, and one step through the objective (chunks,
    checkpointing, target logits when required) gives a finite loss and gradients into the drafter only."""
    from specframe.config import validate_recipe
    from specframe.losses.objective import Objective, WeightedTerm

    validate_recipe(recipe_factory(tmp_path, loss=[{"name": name}]))
    m = step_module
    m.objective = Objective([WeightedTerm(name, 1.0, LOSS_TERMS.build(name, {}))], chunk_blocks=3)
    m.needs_logits = m.objective.needs_target_logits
    m.drafter.zero_grad(set_to_none=True)
    loss, per_term, parts = m.step(step_batch, torch.Generator().manual_seed(0))
    assert set(per_term) == {name} and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in m.drafter.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in m.target.parameters())


def _chunk(logits: torch.Tensor, target_logits: torch.Tensor, seed: int) -> SlotChunk:
    g = torch.Generator().manual_seed(seed)
    n, L, V = logits.shape
    labels = torch.randint(0, V, (n, L), generator=g)
    mask = torch.rand(n, L, generator=g) < 0.8
    mask[0] = True
    block_valid = torch.ones(n, dtype=torch.bool)
    block_valid[-1] = False
    return SlotChunk(logits=logits, labels=labels, mask=mask, block_valid=block_valid, target_logits=target_logits)


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_divergence_is_zero_at_the_target_and_nonnegative_elsewhere(name) -> None:
    term = LOSS_TERMS.build(name, {})
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 6, 11, generator=g) * 2
    same = term(_chunk(target.clone(), target, seed=1))
    assert abs(float(same.numerator / same.denominator)) < 1e-5
    for seed in range(3):
        draft = torch.randn(5, 6, 11, generator=torch.Generator().manual_seed(10 + seed)) * 2
        v = term(_chunk(draft, target, seed=seed))
        assert float(v.numerator / v.denominator) >= -1e-6


# -- alignment strategies --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALIGNMENT_NAMES)
def test_alignment_metadata(name) -> None:
    entry = ALIGNMENTS.get(name)
    assert entry.summary
    assert entry.meta.get("stage") in {"train", "data", "decode"}
    assert getattr(entry.obj, "stage", None) == entry.meta["stage"]
    assert set(getattr(entry.obj, "requires", frozenset())) <= STEP_OUTPUTS
    assert set(getattr(entry.obj, "produces", frozenset())) <= STEP_OUTPUTS
    ALIGNMENTS.build(name, {})  # default options are valid


def _view(B=2, S=12, N=3, V=17, F=8) -> AlignedBatch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (B, S), generator=g)
    valid = torch.ones(B, S, dtype=torch.bool)
    valid[1, -3:] = False
    logits = torch.randn(B, S, V, generator=g)
    return AlignedBatch(input_ids=ids, labels=ids.clone(), loss_mask=valid & (torch.arange(S) > 2),
                        context=torch.randn(B, S, F, generator=g), context_valid=valid,
                        anchors=torch.tensor([[3, 4, 8], [3, 5, 6]]), anchor_valid=torch.ones(B, N, dtype=torch.bool),
                        target_logits=logits, target_greedy=logits.argmax(-1))


@pytest.mark.parametrize("name", TRAIN_ALIGNMENTS)
def test_train_alignment_keeps_shapes_and_changes_only_what_it_produces(name) -> None:
    strategy = ALIGNMENTS.build(name, {})
    view = _view()
    out = strategy.align(view)
    assert isinstance(out, AlignedBatch)
    produces = set(getattr(strategy, "produces", frozenset()))
    for f in dataclasses.fields(AlignedBatch):
        before, after = getattr(view, f.name), getattr(out, f.name)
        if before is None:
            continue
        assert after is not None and after.shape == before.shape and after.dtype == before.dtype, f.name
        if f.name not in produces:
            assert torch.equal(after, before), f"{name} changed {f.name} without declaring it in `produces`"


# -- targets ---------------------------------------------------------------------------------------
def _offline_target(name: str):
    """The target built with default options, or a skip for a target that needs a download."""
    if name not in OFFLINE_TARGETS and not TARGETS.get(name).meta.get("offline"):
        pytest.skip(f"target '{name}' needs a model download or a cached model")
    return TARGETS.build(name, {})


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_offline_target_builds_and_taps_hidden_states(name) -> None:
    target = _offline_target(name)
    B, S = 2, 9
    ids = torch.randint(0, target.vocab_size - 4, (B, S))
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, -2:] = False
    out = target(ids, mask)
    assert out.hidden.shape == (B, S, len(target.tap_layers) * target.hidden_size)
    assert out.logits is None
    with_logits = target(ids, mask, with_logits=True)
    assert with_logits.logits.shape == (B, S, target.vocab_size)
    torch.testing.assert_close(with_logits.hidden, out.hidden)
    assert torch.isfinite(out.hidden).all()
    assert target.embed(ids).shape == (B, S, target.hidden_size)
    assert target.lm_head_weight.shape == (target.vocab_size, target.hidden_size)
    assert not any(p.requires_grad for p in target.parameters())
    spec = target.spec
    assert (spec.hidden_size, spec.vocab_size, spec.tap_layers) == (target.hidden_size, target.vocab_size,
                                                                     target.tap_layers)
    assert all(0 <= t < target.num_layers for t in target.tap_layers)
    assert target.name and isinstance(target.name, str)


# -- the Protocols match what the code uses: every entry of every registry satisfies its Protocol ----------------
@pytest.mark.parametrize("name", DRAFTER_NAMES)
def test_drafter_satisfies_the_drafter_protocol_and_its_pieces_compose(name, tiny_spec) -> None:
    """decoding/drafts.py composes fuse_context -> context_kv -> block_inputs -> run_layers; with the whole
    context visible to one block, that must equal the training forward's output for the same block."""
    from specframe.interfaces import Drafter

    torch.manual_seed(0)
    drafter = DRAFTERS.build(name, {}, spec=tiny_spec).eval()
    assert isinstance(drafter, Drafter)
    assert isinstance(drafter.block_size, int) and drafter.block_size >= 2
    context, cv, emb, _, _ = _drafter_inputs(tiny_spec, B=1, N=1)
    mask_embed = None if drafter.mask_token_id is None else torch.randn(tiny_spec.hidden_size)
    anchor = 9
    with torch.no_grad():
        trained = drafter(context, cv, emb, torch.tensor([[anchor]]), torch.ones(1, 1, dtype=torch.bool), mask_embed)
        ctx = drafter.fuse_context(context[:, :anchor])
        kv = drafter.context_kv(ctx, torch.arange(anchor).unsqueeze(0))
        blocks = drafter.block_inputs(emb, mask_embed)
        decoded = drafter.run_layers(blocks, torch.tensor([[anchor]]), kv, None)
    assert decoded.shape == trained.shape == (1, 1, drafter.block_size, tiny_spec.hidden_size)
    torch.testing.assert_close(decoded, trained, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_target_satisfies_the_target_protocol(name) -> None:
    from specframe.interfaces import Target, TargetSpec

    target = _offline_target(name)
    assert isinstance(target, Target)
    assert isinstance(target.spec, TargetSpec)
    assert target.lm_head_weight.shape == (target.vocab_size, target.hidden_size)


def test_decode_strategies_satisfy_the_decode_strategy_protocol() -> None:
    from specframe.decoding.strategies import DECODE_STRATEGIES
    from specframe.interfaces import DecodeStrategy

    assert DECODE_STRATEGIES.names()
    for name in DECODE_STRATEGIES.names():
        entry = DECODE_STRATEGIES.get(name)
        assert entry.summary, name
        strategy = DECODE_STRATEGIES.build(name, {})  # default options are valid
        assert isinstance(strategy, DecodeStrategy), name
        assert name not in ALIGNMENTS  # test-time strategies are not training alignments


def test_benchmarks_satisfy_the_benchmark_protocol() -> None:
    from specframe.evaluation.benchmarks import BENCHMARKS
    from specframe.interfaces import Benchmark

    built = 0
    for entry in BENCHMARKS.entries():
        assert entry.summary and entry.meta.get("domain"), entry.name
        if entry.name == "jsonl":  # needs a path
            bench = BENCHMARKS.build("jsonl", {"path": "prompts.jsonl"})
        else:
            bench = BENCHMARKS.build(entry.name, {})  # building reads nothing; prompts() does
        assert isinstance(bench, Benchmark), entry.name
        assert bench.domain == entry.meta["domain"]
        built += 1
    assert built == len(BENCHMARKS)
