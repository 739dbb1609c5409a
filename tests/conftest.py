"""Shared fixtures: tiny corpora and recipes made inside each test; no network, ever."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

# Before `datasets` is imported anywhere: offline, with its cache in a throwaway folder.
_CACHE = tempfile.mkdtemp(prefix="textlstm-test-hf-")
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": _CACHE,
        "HF_DATASETS_CACHE": os.path.join(_CACHE, "datasets"),
        "TOKENIZERS_PARALLELISM": "false",
    }
)
os.environ.pop("TEXTLSTM_DATA_DIR", None)
# textlstm's own preprocessing cache and vocabulary store: throwaway folders too
os.environ.update(
    {
        "TEXTLSTM_CACHE": os.path.join(_CACHE, "textlstm"),
        "TEXTLSTM_VOCAB_DIR": os.path.join(_CACHE, "vocab"),
    }
)

# one thread count for every test and every process a test starts: sums can differ in their last
# bits with the count, and tests compare runs bit for bit (test_threads tests the policy itself)
os.environ.setdefault("TEXTLSTM_THREADS", str(min(2, os.cpu_count() or 1)))

import pytest  # noqa: E402

WORDS = {
    "pos": ["great", "superb", "lovely", "wonderful", "brilliant", "enjoyable"],
    "neg": ["awful", "boring", "dreadful", "terrible", "dull", "horrible"],
    "neutral": ["film", "plot", "actor", "scene", "story", "movie", "the", "a", "was", "and"],
}


def make_texts(label: str, count: int, seed: int) -> list[str]:
    """Texts whose class shows in a few class words among shared filler words."""
    rng = random.Random(f"{label}-{seed}")
    texts = []
    for _ in range(count):
        words = rng.choices(WORDS["neutral"], k=rng.randint(4, 14))
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS[label]))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def write_label_folders(
    root: Path, per_class: int = 40, seed: int = 0, labels: tuple[str, ...] = ("neg", "pos")
) -> Path:
    """``root/<label>/<n>.txt``: the BBC / aclImdb layout."""
    for label in labels:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(make_texts(label, per_class, seed)):
            (folder / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


def write_recipe(path: Path, dataset: str | Path, extra: str = "", **sections: str) -> Path:
    """A tiny, fast recipe; ``extra`` is appended verbatim (TOML)."""
    body = f'''name = "tiny"
seed = 7

[data]
dataset = "{dataset}"
validation_fraction = 0.2
test_fraction = 0.2

[tokenizer]
max_length = 32

[model]
embedding_dim = 16
hidden_size = 12
dropout = 0.1

[train]
epochs = 3
batch_size = 8
lr = 0.01
patience = 0
'''
    path.write_text(body + extra, encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_label_folders(tmp_path / "corpus")


@pytest.fixture
def recipe_path(tmp_path: Path, corpus: Path) -> Path:
    return write_recipe(tmp_path / "tiny.toml", corpus)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run folder, trained once per test session and shared read-only."""
    from textlstm.recipe import load_recipe
    from textlstm.training import train

    root = tmp_path_factory.mktemp("trained")
    corpus = write_label_folders(root / "corpus")
    recipe = load_recipe(write_recipe(root / "tiny.toml", corpus))
    return train(recipe, root / "runs", device="cpu").run_dir


PRETRAIN = """
[pretrain]
epochs = 2
batch_size = 4
bptt = 8
samples = 16
lr = 0.01
heldout_tokens = 200
"""


@pytest.fixture(scope="session")
def pretrained_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished language-model run folder (both directions), shared read-only."""
    from textlstm.lm import pretrain
    from textlstm.recipe import load_recipe

    root = tmp_path_factory.mktemp("pretrained")
    corpus = write_label_folders(root / "corpus")
    recipe = load_recipe(write_recipe(root / "tiny.toml", corpus, PRETRAIN))
    return pretrain(recipe, root / "runs", device="cpu").run_dir
