"""What a run folder holds and how it is scored, below every stage that writes or reads one:
the checkpoint (weights, resolved recipe, vocabulary, labels, versions), the scores of a split,
and the plots that training and evaluation both draw."""
