# Everything sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
RUN := $(BIN)/textlstm

.PHONY: bench-quick bench-accuracy bench-generality setup demo check test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare torch requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[demo,test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(RUN) train recipes/bbc-news.toml --out runs/demo
	$(RUN) evaluate runs/demo/bbc-news/latest --split test
	printf '%s\n' \
	  "Shares in the bank rose sharply after it reported record annual profits." \
	  "The striker scored twice as the champions won the cup final at Wembley." \
	  "The prime minister faces a vote in parliament on the new immigration bill." \
	  "The band's new album went straight to number one in the charts." \
	  "The company unveiled a faster chip for smartphones and laptops." \
	  | $(RUN) predict runs/demo/bbc-news/latest - --top-k 2

# The checks run themselves: lint, format and types first (seconds), then the suite
check: setup
	$(BIN)/ruff check textlstm tests bench
	$(BIN)/ruff format --check textlstm tests bench
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest --durations=20

# Benchmarks need real data: DATA (or TEXTLSTM_DATA_DIR) is a root holding stanfordnlp/imdb
DATA ?= $(TEXTLSTM_DATA_DIR)
bench: setup
	@test -n "$(DATA)" -a -d "$(DATA)/stanfordnlp/imdb" || { echo "make bench needs the IMDB \
	mirror: make bench DATA=<root holding stanfordnlp/imdb> (see bench/README.md)"; exit 2; }
	$(BIN)/python bench/tokenization.py "$(DATA)"
	$(BIN)/python bench/vectors.py
	$(BIN)/python bench/packing.py "$(DATA)"
	$(BIN)/python bench/speed.py "$(DATA)"
	$(BIN)/python bench/lm_speed.py "$(DATA)"

# Accuracy from scratch against TF-IDF + LR and NBSVM on the same rows (IMDB, BBC News, SST-2);
# DATA holds stanfordnlp/imdb and stanfordnlp/sst2 (GloVe is installed with textlstm)
bench-accuracy: setup
	@test -n "$(DATA)" -a -d "$(DATA)/stanfordnlp/imdb" -a -d "$(DATA)/stanfordnlp/sst2" || { echo \
	"make bench-accuracy needs DATA=<root holding stanfordnlp/imdb and stanfordnlp/sst2> (see \
	bench/README.md)"; exit 2; }
	$(BIN)/python bench/accuracy.py "$(DATA)"

# `textlstm init`'s recipe against TF-IDF + LR and NBSVM on every set of the development suite;
# DATA holds the suite (../shared/datasets), IMDB (optional) a root holding stanfordnlp/imdb
bench-generality: setup
	@test -n "$(DATA)" -a -d "$(DATA)/CogComp/trec" || { echo "make bench-generality needs \
	DATA=<root of the development suite, e.g. ../shared/datasets> [IMDB=<root holding \
	stanfordnlp/imdb>] (see bench/README.md)"; exit 2; }
	$(BIN)/python bench/generality.py "$(DATA)" $(if $(IMDB),--imdb "$(IMDB)")

# The speed table on 2,000 reviews per split, for iteration (a few minutes)
bench-quick: setup
	@test -n "$(DATA)" -a -d "$(DATA)/stanfordnlp/imdb" || { echo "make bench-quick needs the IMDB \
	mirror: make bench-quick DATA=<root holding stanfordnlp/imdb> (see bench/README.md)"; exit 2; }
	$(BIN)/python bench/speed.py "$(DATA)" --quick

clean:
	rm -rf $(VENV) runs
