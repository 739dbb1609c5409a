"""The classifier: embedding -> LSTM/GRU -> pooling -> head (``classifier``), the naive-Bayes
weighted linear model beside it (``wide``), and length-bucketed, padded batches (``batching``)."""
