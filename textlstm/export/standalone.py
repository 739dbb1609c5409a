"""Predict with an exported textlstm model: onnxruntime and numpy, no textlstm, no torch.

This file is copied into every export folder as ``predict.py``; it reads the folder it sits in.

    python predict.py texts.txt              # one text per line -> one JSON line per text
    python predict.py - --top-k 2 < texts.txt

From Python, with the export folder on ``sys.path`` (or this file copied beside your code):

    from predict import Model
    model = Model("path/to/export")
    model.predict(["a text", "another"])     # [{"label": ..., "score": ..., "scores": {...},
                                             #   "labels": [...]}]

Texts become token ids exactly as textlstm makes them, from ``preprocess.json`` (the recipe's
tokenizer settings and rules), ``vocab.json`` and, for subword tokenizers, ``tokenizer.json``
(that kind needs ``pip install tokenizers``; a spaCy tokenizer needs ``pip install spacy``, a
jieba one ``pip install jieba``).
The model takes ``tokens`` (batch, steps) int64, padded with 0 after each text, and ``lengths``
(batch,) int64; it returns ``logits`` and ``probabilities`` (batch, labels): a softmax, or for
a multi-label model a sigmoid per label, whose labels are given where the score reaches the
label's threshold in ``decision.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent


class Model:
    """An export folder loaded for prediction on the CPU."""

    def __init__(self, folder: str | Path = HERE, threads: int = 0) -> None:
        folder = Path(folder)
        self.settings: dict[str, Any] = _read(folder / "preprocess.json")
        self.labels: list[str] = _read(folder / "labels.json")
        decision = _read(folder / "decision.json") if (folder / "decision.json").is_file() else {}
        given = decision.get("thresholds")
        self.thresholds = None if given is None else np.array([given[n] for n in self.labels])
        tokens = _read(folder / "vocab.json")["tokens"]
        self.index = {token: i for i, token in enumerate(tokens)}
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, every core
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._words, self._subword = _tokenizer(self.settings, folder)

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids per text, as textlstm makes them; a text with no tokens is one <unk>."""
        s = self.settings
        if self._words is None:  # a subword tokenizer: its own normalizer cleans the text
            ids = [e.ids for e in self._subword.encode_batch(list(texts), add_special_tokens=False)]
        else:
            unk, get = s["unk_id"], self.index.get
            ids = [[get(token, unk) for token in self._words(text)] for text in texts]
        limit, mode = s["max_length"], s["truncation"]
        return [np.asarray(_truncate(row, limit, mode) or [s["unk_id"]], np.int64) for row in ids]

    def probabilities(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(texts, labels) probabilities in input order; batches are sorted by length."""
        ids = self.encode(texts)
        out = np.zeros((len(ids), len(self.labels)), np.float32)
        order = np.argsort([len(row) for row in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            lengths = np.array([len(ids[r]) for r in rows], np.int64)
            steps = max(int(lengths.max()), self.settings["min_steps"])
            tokens = np.full((len(rows), steps), self.settings["pad_id"], np.int64)
            for i, r in enumerate(rows):
                tokens[i, : len(ids[r])] = ids[r]
            feed = {"tokens": tokens, "lengths": lengths}
            out[rows] = self.session.run(["probabilities"], feed)[0]
        return out

    def predict(
        self, texts: Sequence[str], top_k: int = 0, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """A record per text: label, score (its probability), every label's probability and the
        labels given (the top one; for a multi-label model each whose score reaches its
        threshold, highest first); ``top_k`` keeps the k likeliest labels in ``scores``."""
        records = []
        for row in self.probabilities(texts, batch_size):
            order = np.argsort(-row, kind="stable")
            ranked = order[: top_k or len(row)]
            if self.thresholds is None:
                given = order[:1]
            else:
                given = order[row[order] >= self.thresholds[order]]
            records.append(
                {
                    "label": self.labels[ranked[0]],
                    "score": float(row[ranked[0]]),
                    "scores": {self.labels[i]: float(row[i]) for i in ranked},
                    "labels": [self.labels[i] for i in given],
                }
            )
        return records


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _truncate(ids: list[int], limit: int, mode: str) -> list[int]:
    if len(ids) <= limit:
        return ids
    if mode == "head":
        return ids[:limit]
    if mode == "tail":
        return ids[len(ids) - limit :]
    head = limit // 2
    return ids[:head] + ids[len(ids) - (limit - head) :]


def _clean(settings: dict[str, Any], lowercase: bool) -> Callable[[str], str]:
    """HTML tags out, Penn Treebank tokens put back together, then lower case, as textlstm."""
    tag = re.compile(settings["tag_pattern"])
    clitic, symbol = re.compile(settings["ptb_clitic"]), re.compile(settings["ptb_symbol"])
    symbols: dict[str, str] = settings["ptb_symbols"]

    def clean(text: str) -> str:
        if settings["strip_html"]:
            text = tag.sub(" ", text)
        if settings["detokenize"] == "ptb":
            text = clitic.sub("", text)
            text = symbol.sub(lambda m: symbols[m.group(0).lower()], text)
        return text.lower() if lowercase else text

    return clean


def _tokenizer(
    settings: dict[str, Any], folder: Path
) -> tuple[Callable[[str], list[str]] | None, Any]:
    """(text -> tokens, None) for the word kinds; (None, the tokenizers library's tokenizer)
    for a subword kind, whose ids come from it directly."""
    kind = settings["kind"]
    if kind in ("bpe", "wordpiece", "unigram"):
        from tokenizers import Tokenizer

        return None, Tokenizer.from_file(str(folder / "tokenizer.json"))
    if kind == "spacy":  # case kept for spaCy's exception rules, lowered after
        import spacy

        nlp, clean = spacy.blank(settings["language"]), _clean(settings, False)
        lower = settings["lowercase"]
        return lambda text: [
            t.lower_ if lower else t.text for t in nlp(clean(text)) if not t.is_space
        ], None
    clean = _clean(settings, settings["lowercase"])
    if kind == "jieba":  # Chinese word segmentation: the version named in this folder's README
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        return lambda text: [w for w in jieba.lcut(clean(text)) if not w.isspace()], None
    if kind == "whitespace":
        return lambda text: clean(text).split(), None
    words = re.compile(settings["word_pattern"])
    return lambda text: words.findall(clean(text)), None


def _lines(source: str) -> Iterable[str]:
    stream = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    with stream:
        for line in stream:
            yield line.rstrip("\r\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Predict labels for texts, one per line.")
    parser.add_argument("input", help="a text file, one text per line, or - for stdin")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k likeliest labels")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    model, chunk = Model(), []
    for text in [*_lines(args.input), None]:
        if text is not None:
            chunk.append(text)
        if chunk and (text is None or len(chunk) == 4096):
            for record in model.predict(chunk, args.top_k, args.batch_size):
                print(json.dumps(record, ensure_ascii=False))
            chunk = []


if __name__ == "__main__":
    main()
