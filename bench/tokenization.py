"""Tokenization throughput and the preprocessing cache, on the IMDB train split.

Usage: python bench/tokenization.py [DATA_ROOT] [--kinds regex,spacy,...] [--repeats 3]
(DATA_ROOT holds stanfordnlp/imdb; default TEXTLSTM_DATA_DIR.)

1. Throughput: each tokenizer kind turns the 25,000 train reviews into token ids (text -> ids,
   all cores, no truncation), against the plain-Python reference measured in the same run,
   interleaved with it: ``[re.findall(pattern, text.lower()) for text in texts]``, which only
   produces token strings. Median of ``--repeats``; tokens/s counts the tokens each side produced.
2. Cache: ``text.cache.preprocess`` of recipes/imdb.toml (vocabulary + train, validation ids)
   into an empty cache folder, then the same call again, which reads the cache.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from textlstm.data.sources import load_raw
from textlstm.recipe import TokenizerConfig, VocabConfig, load_recipe
from textlstm.text.cache import Options, preprocess
from textlstm.text.encoder import cores, fit_encoder
from textlstm.text.tokenizers import WORD_PATTERN

KINDS = ("regex", "whitespace", "spacy", "bpe", "wordpiece", "unigram")
RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "imdb.toml"


def reference(texts: list[str]) -> int:
    pattern = WORD_PATTERN.pattern
    return sum(len(re.findall(pattern, text.lower())) for text in texts)


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def throughput(texts: list[str], kinds: list[str], repeats: int) -> None:
    print(f"{len(texts):,} reviews, {sum(map(len, texts)) / 1e6:.1f}M characters, {cores()} cores")
    print(
        f"{'kind':<11} {'fit s':>7} {'tokens':>11} {'tokens/s':>12} "
        f"{'reference/s':>12} {'ratio':>6}"
    )
    for kind in kinds:
        cfg = TokenizerConfig(
            kind=kind,
            max_length=100_000,
            **({"vocab_size": 30_000} if kind in ("bpe", "wordpiece", "unigram") else {}),
        )
        fit_seconds, (encoder, _) = timed(fit_encoder, cfg, VocabConfig(max_size=30_000), texts)
        ours, refs, count, ref_count = [], [], 0, 0
        for _ in range(repeats):  # interleaved: the machine's noise hits both sides alike
            seconds, ref_count = timed(reference, texts)
            refs.append(seconds)
            seconds, ids = timed(encoder.encode, texts)
            ours.append(seconds)
            count = sum(map(len, ids))
        ours_rate, ref_rate = count / statistics.median(ours), ref_count / statistics.median(refs)
        print(
            f"{kind:<11} {fit_seconds:7.2f} {count:11,} {ours_rate:12,.0f} {ref_rate:12,.0f} "
            f"{ours_rate / ref_rate:6.2f}",
            flush=True,
        )


def cached_pass(data_root: str | None, repeats: int) -> None:
    from textlstm.data import column, load_splits

    recipe = load_recipe(RECIPE)
    splits = load_splits(recipe.data, data_root, recipe.seed)
    texts = {name: column(splits[name], "text") for name in ("train", "validation")}
    firsts, seconds = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="textlstm-bench-cache-") as cache:
            options = Options(vocab_dir=None, cache_dir=Path(cache))
            firsts.append(timed(preprocess, recipe, texts, options)[0])
            took, done = timed(preprocess, recipe, texts, options)
            seconds.append(took)
        assert done.cached == ["train", "validation"], done.cached
    first, second = statistics.median(firsts), statistics.median(seconds)
    print(
        f"preprocessing of {RECIPE.name} (vocabulary + train and validation ids, "
        f"{sum(map(len, texts.values())):,} texts), median of {repeats}: first pass "
        f"{first:.2f}s, cached second pass {second:.3f}s ({second / first:.1%} of the first)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_root", nargs="?", default=os.environ.get("TEXTLSTM_DATA_DIR"))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.data_root:
        sys.exit("give the folder holding stanfordnlp/imdb (or set TEXTLSTM_DATA_DIR)")
    raw, *_ = load_raw("stanfordnlp/imdb", None, args.data_root, None)
    throughput(raw["train"]["text"][:], args.kinds.split(","), args.repeats)
    cached_pass(args.data_root, args.repeats)


if __name__ == "__main__":
    main()
