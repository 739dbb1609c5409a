"""Text -> tokens -> ids: tokenizers (word kinds and subword), the vectorised scanner, vocabularies,
pretrained vectors, the encoder that joins a tokenizer to its vocabulary, the vocabulary store
(``vocab/``) and the preprocessing cache."""
