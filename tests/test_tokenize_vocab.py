import numpy as np
import pytest

from textlstm.errors import CheckpointError
from textlstm.recipe import TokenizerConfig, VocabConfig
from textlstm.text.tokenizers import build_tokenizer
from textlstm.text.vocab import PAD, UNK, UNK_ID, Vocab, build_vocab


def test_regex_tokenizer_splits_words_numbers_and_punctuation():
    tokenize = build_tokenizer(TokenizerConfig())
    assert tokenize("Don't panic: it's 42, OK?!") == [
        "don't",
        "panic",
        ":",
        "it's",
        "42",
        ",",
        "ok",
        "?",
        "!",
    ]


def test_lowercase_off_and_truncation():
    tokenize = build_tokenizer(TokenizerConfig(lowercase=False, max_length=3))
    assert tokenize("The Quick brown fox") == ["The", "Quick", "brown"]
    assert tokenize.batch(["A b c d", "", "x"]) == [["A", "b", "c"], [], ["x"]]


def test_whitespace_tokenizer_keeps_pre_tokenized_text():
    tokenize = build_tokenizer(TokenizerConfig(kind="whitespace"))
    assert tokenize("it 's a  charming , film ") == ["it", "'s", "a", "charming", ",", "film"]


def test_unicode_and_control_characters_do_not_break_tokenizing():
    tokenize = build_tokenizer(TokenizerConfig())
    assert tokenize("Naïve CAFÉ — 日本語!") == ["naïve", "café", "—", "日本語", "!"]
    assert tokenize("\n\t ") == [] and tokenize("a\x00b") == ["a", "\x00", "b"]


def test_vocab_orders_by_frequency_with_specials_first():
    vocab = build_vocab([["b", "a", "b"], ["c", "b", "a"], ["d"]], VocabConfig(min_freq=1))
    assert vocab.tokens == [PAD, UNK, "b", "a", "c", "d"]
    assert list(vocab.encode(["a", "zzz"])) == [3, UNK_ID]


def test_vocab_min_freq_and_max_size():
    tokens = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert build_vocab(tokens, VocabConfig(min_freq=2)).tokens == [PAD, UNK, "a", "b", "c"]
    assert len(build_vocab([[f"w{i}" for i in range(50)]], VocabConfig(max_size=10))) == 10


def test_empty_text_encodes_to_one_unknown_token():
    vocab = Vocab([PAD, UNK, "x"])
    encoded = vocab.encode([])
    assert encoded.dtype == np.int64 and list(encoded) == [UNK_ID]


def test_vocab_saves_and_loads(tmp_path):
    vocab = build_vocab([["ünï", "code", "code"]], VocabConfig())
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").tokens == vocab.tokens
    (tmp_path / "bad.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(CheckpointError, match="not a valid vocabulary file"):
        Vocab.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    "truncation, expected",
    [
        ("head", ["a", "b", "c", "d"]),
        ("tail", ["g", "h", "i", "j"]),
        ("head+tail", ["a", "b", "i", "j"]),
    ],
)
def test_truncation_keeps_the_chosen_part(truncation, expected):
    tokenize = build_tokenizer(TokenizerConfig(max_length=4, truncation=truncation))
    assert tokenize("a b c d e f g h i j") == expected
    assert tokenize("x y") == ["x", "y"]  # short texts are untouched


def test_strip_html_drops_tags_but_not_comparisons():
    text = "Great film.<br /><br />Loved it, 3 < 5 and <i>really</i> fun"
    assert build_tokenizer(TokenizerConfig(strip_html=True))(text) == [
        "great",
        "film",
        ".",
        "loved",
        "it",
        ",",
        "3",
        "<",
        "5",
        "and",
        "really",
        "fun",
    ]
    assert "br" in build_tokenizer(TokenizerConfig())(text)


PTB = "It does n't work , it 's bad -LRB- really -RRB- . `` ok '' wo n't ca n't"
RAW = ["it", "doesn't", "work", ",", "it's", "bad", "(", "really", ")", ".", '"', "ok", '"']
RAW += ["won't", "can't"]


@pytest.mark.parametrize("kind", ["regex", "whitespace"])
def test_ptb_detokenizing_reads_treebank_text_as_the_raw_text_it_came_from(kind):
    tokenizer = build_tokenizer(TokenizerConfig(kind=kind, detokenize="ptb"))
    assert tokenizer(PTB) == RAW
    raw = build_tokenizer(TokenizerConfig())("It doesn't work, it's bad (really). \"ok\" won't")
    assert tokenizer(PTB)[: len(raw)] == raw  # the tokens a model of raw text knows
    assert "n't" in build_tokenizer(TokenizerConfig(kind=kind))(PTB)  # off by default


def test_ptb_detokenizing_is_the_same_in_the_subword_normalizer():
    from textlstm.text.subword import train_subword
    from textlstm.text.tokenizers import detokenize_ptb

    cfg = TokenizerConfig(kind="bpe", detokenize="ptb", vocab_size=60, lowercase=False)
    trained = train_subword(cfg, [PTB] * 5)
    assert trained.normalizer.normalize_str(PTB) == detokenize_ptb(PTB)
    assert detokenize_ptb("x 'sup , it 'd") == "x 'sup , it'd"  # only a whole clitic joins
    assert detokenize_ptb(PTB).startswith("It doesn't work , it's bad ( really ) . \" ok \"")


ALPHABET = "ab_Z9 \t\n'’'.,!-<>/éÉ日本の한ｶ々〇𠀀\u0301\u00a0\u2028\x1c\x00\ud800🙂𝔘😀İΣ"


def random_texts(seed: int, count: int = 300) -> list[str]:
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(count)]


@pytest.mark.parametrize("kind", ["regex", "whitespace", "char"])
@pytest.mark.parametrize("lowercase", [True, False])
def test_vectorised_scan_finds_exactly_the_regex_tokens(kind, lowercase):
    """The numpy scanner (used for ids) and the plain regex / str.split (used for strings) agree
    on awkward text: apostrophes in every position, astral and combining characters, surrogates."""
    from textlstm.text.scan import hash_strings

    tokenizer = build_tokenizer(TokenizerConfig(kind=kind, lowercase=lowercase, max_length=100_000))
    for seed in range(5):
        texts = [*random_texts(seed), "", "  ", "don't o'clock 'quoted' a''b a'b'c rock’n’roll"]
        texts.append("用iPhone拍的'照片'不错’s 日'本 a'日")
        expected = tokenizer.batch(texts)
        scan = tokenizer.scan(texts)
        assert scan.counts.tolist() == [len(t) for t in expected]
        found = [scan.joined[s:e] for s, e in zip(scan.starts.tolist(), scan.ends.tolist())]
        assert found == [token for tokens in expected for token in tokens]
        flat = [token for tokens in expected for token in tokens]
        assert scan.hashes.tolist() == hash_strings(flat).tolist()


@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail"])
def test_vectorised_encoding_equals_token_by_token_lookup(truncation):
    from textlstm.text.encoder import fit_encoder

    texts = random_texts(9, 500)
    cfg = TokenizerConfig(max_length=7, truncation=truncation)
    encoder, counts = fit_encoder(cfg, VocabConfig(max_size=40), texts)
    tokenizer = build_tokenizer(cfg)
    reference = build_vocab(tokenizer.batch(texts), VocabConfig(max_size=40))
    assert encoder.vocab.tokens == reference.tokens
    assert counts == __import__("collections").Counter(
        t for ts in tokenizer.batch(texts) for t in ts
    )
    for ids, tokens in zip(encoder.encode(texts), tokenizer.batch(texts)):
        assert ids.tolist() == reference.encode(tokens).tolist()
