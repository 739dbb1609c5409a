"""textlstm.predict.predictor: input files in (one DataError line per bad file), predictions out in input
order, written as JSONL / CSV / TSV. Uses the session's trained run; never trains."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from textlstm.errors import DataError
from textlstm.predict.files import PredictionWriter, read_inputs
from textlstm.predict.predictor import Prediction, Predictor
from textlstm.training import Events

from conftest import make_texts, write_label_folders, write_recipe


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    """One thread while predicting: these tiny batches gain nothing from more, and OpenMP
    threads that spin-wait on busy CPUs made each call ~50x slower in CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield Predictor.load(trained_run, device="cpu")
    finally:
        torch.set_num_threads(threads)


def read(path: Path, **options) -> list[str]:
    return list(read_inputs(str(path), **options))


def bad_input(path: Path, **options) -> str:
    """Read ``path``, expect a DataError, return its single line."""
    with pytest.raises(DataError) as exc:
        read(path, **options)
    assert type(exc.value) is DataError
    assert len(exc.value.lines) == 1, exc.value.lines
    assert "\n" not in str(exc.value)
    return exc.value.lines[0]


def mixed_texts(count: int) -> list[str]:
    """Texts of varied lengths from both classes, interleaved."""
    pos, neg = make_texts("pos", count, 11), make_texts("neg", count, 12)
    return [text for pair in zip(pos, neg) for text in pair][:count]


# --- read_inputs: text files -------------------------------------------------------------------


def test_txt_one_text_per_line_with_crlf_and_empty_lines(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"first text\r\n\r\nsecond, text\r\nthird\n\nlast without newline")
    texts = read(path)
    assert texts == ["first text", "", "second, text", "third", "", "last without newline"]
    assert not any("\r" in text for text in texts)


def test_txt_final_newline_does_not_add_a_text(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\nb\n")
    assert read(path) == ["a", "b"]


def test_txt_non_utf8_bytes_are_replaced(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"caf\xe9 lovely\ngood \xff\xfe end\nplain\n")
    assert read(path) == ["caf\ufffd lovely", "good \ufffd\ufffd end", "plain"]


def test_unknown_suffix_is_read_as_lines(tmp_path):
    path = tmp_path / "in.text"
    path.write_text("one\ntwo\n", encoding="utf-8")
    assert read(path) == ["one", "two"]


def test_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\r\n\r\nb\xff\n")))
    assert list(read_inputs("-")) == ["from stdin", "", "b\ufffd"]


def test_read_inputs_is_lazy(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1000)), encoding="utf-8")
    assert list(itertools.islice(read_inputs(str(path)), 3)) == ["line 0", "line 1", "line 2"]


# --- read_inputs: tables -----------------------------------------------------------------------


def test_csv_text_column(tmp_path):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review", "stars"])
        writer.writerow(["1", "plain", "5"])
        writer.writerow(["2", 'with, comma and "quotes"', "3"])
        writer.writerow(["3", "two\nlines", "1"])
        writer.writerow(["4", "", "2"])
    assert read(path, text_column="review") == [
        "plain",
        'with, comma and "quotes"',
        "two\nlines",
        "",
    ]


def test_csv_with_crlf_rows_and_non_utf8(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"text,n\r\ncaf\xe9,1\r\nplain,2\r\n")
    assert read(path) == ["caf\ufffd", "plain"]


def test_tsv_text_column(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("n\ttext\n1\thello, world\n2\tsecond text\n", encoding="utf-8")
    assert read(path) == ["hello, world", "second text"]
    assert read(path, text_column="n") == ["1", "2"]


def test_csv_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,body\n1,hello\n", encoding="utf-8")
    assert bad_input(path) == f"{path}: no column 'text' (columns: id, body); pass text_column"
    assert bad_input(path, text_column="review") == (
        f"{path}: no column 'review' (columns: id, body); pass text_column"
    )


def test_csv_ragged_row_names_its_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,text\n1,fine\n2,also fine\n3,not, quoted\n4,never read\n", encoding="utf-8")
    assert bad_input(path) == (f"{path}:4: expected 2 fields, found 3; fix the quoting on that row")


def test_csv_short_row_names_its_line(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("id\ttext\n1\tfine\nlonely\n", encoding="utf-8")
    assert bad_input(path) == f"{path}:3: expected 2 fields, found 1; fix the quoting on that row"


def test_csv_with_a_utf8_bom(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhello,1\n")
    assert read(path) == ["hello"]


def test_csv_with_a_very_long_field(tmp_path):
    path = tmp_path / "in.csv"
    long_text = " ".join(["word"] * 40_000)  # 200,000 characters
    path.write_text(f'text\n"{long_text}"\nshort\n', encoding="utf-8")
    texts = read(path)
    assert texts == [long_text, "short"]


# --- read_inputs: jsonl ------------------------------------------------------------------------


def test_jsonl_text_key(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"review": "first", "id": 1}\n\n{"review": "caf\\u00e9"}\n'
        '{"review": null}\n{"review": 42}\n',
        encoding="utf-8",
    )
    assert read(path, text_key="review") == ["first", "café", "", "42"]


def test_jsonl_broken_line_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"text": "ok"}\n{"text": "ok too"}\n{"text": "broken\n{"text": "never"}\n',
        encoding="utf-8",
    )
    message = bad_input(path)
    assert message.startswith(f"{path}:3: not valid JSON (")
    assert message.endswith("); fix or remove that line")


def test_jsonl_missing_key_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"review": "a"}\n{"body": "b"}\n', encoding="utf-8")
    assert bad_input(path, text_key="review") == f"{path}:2: no key 'review'; pass text_key"


def test_jsonl_record_that_is_not_an_object(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('["a", "b"]\n', encoding="utf-8")
    assert bad_input(path) == f"{path}:1: no key 'text'; pass text_key"


def test_a_bad_record_reads_in_library_terms_and_its_raw_form_in_the_clis(tmp_path):
    from textlstm.errors import for_cli
    from textlstm.predict.predictor import BadRecord

    path = tmp_path / "in.jsonl"
    path.write_text('{"review": "a"}\n', encoding="utf-8")
    (bad,) = read_inputs(str(path), on_error="record")
    assert isinstance(bad, BadRecord) and bad.message == "no key 'text'; pass text_key"
    assert for_cli(bad.raw, {}) == f"{path}:1: no key 'text'; pass --text-key"


# --- read_inputs: unusable files ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["in.txt", "in.csv", "in.jsonl"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    assert bad_input(path) == f"{path}: the input file is empty"


def test_a_directory(tmp_path):
    assert bad_input(tmp_path) == (
        f"{tmp_path}: is a folder; give a .txt, .csv, .tsv or .jsonl file"
    )


def test_a_missing_file(tmp_path):
    assert bad_input(tmp_path / "nope.txt") == f"{tmp_path / 'nope.txt'}: input file not found"


@pytest.mark.parametrize("name", ["in.txt", "in.csv", "in.jsonl"])
def test_a_binary_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    assert bad_input(path) == (
        f"{path}: looks like a binary file, not text; give a .txt, .csv, .tsv or .jsonl file"
    )


# --- Predictor ---------------------------------------------------------------------------------


def check_prediction(prediction: Prediction, labels: list[str]) -> None:
    assert list(prediction.scores) == labels
    assert math.isclose(sum(prediction.scores.values()), 1.0, abs_tol=1e-5)
    assert all(0.0 <= p <= 1.0 and math.isfinite(p) for p in prediction.scores.values())
    assert prediction.label == max(prediction.scores, key=prediction.scores.get)
    assert prediction.score == prediction.scores[prediction.label]


def assert_same(got: list[Prediction], want: list[Prediction], tol: float) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.label == b.label, i
        for label in b.scores:
            assert abs(a.scores[label] - b.scores[label]) <= tol, (i, label)


def test_predictor_labels(predictor):
    assert predictor.labels == ["neg", "pos"]
    assert predictor.device.type == "cpu"


def test_predict_keeps_input_order_and_count(predictor):
    texts = [*mixed_texts(7), "", "great", " ".join(["dull"] * 60)]
    batched = predictor.predict(texts, batch_size=4)  # several length-sorted batches
    assert len(batched) == len(texts)
    alone = [predictor.predict([text])[0] for text in texts]
    assert_same(batched, alone, tol=1e-5)
    assert_same(predictor.predict(texts[::-1], batch_size=4)[::-1], batched, tol=1e-6)
    for prediction in batched:
        check_prediction(prediction, predictor.labels)


def test_duplicates_get_the_same_prediction(predictor):
    texts = ["a lovely film", "a dull film"] * 3
    out = predictor.predict(texts, batch_size=4)
    assert_same(out[2:], out[:-2], tol=1e-6)


def test_empty_and_very_long_texts_get_predictions(predictor):
    long_text = " ".join(["superb", "film", "dreadful", "plot"] * 2500)  # 10,000 words
    out = predictor.predict(["", long_text, "   "])
    assert len(out) == 3
    for prediction in out:
        check_prediction(prediction, predictor.labels)
    assert_same(out[2:], out[:1], tol=1e-6)  # white space only is the same as empty


def test_predict_nothing(predictor):
    assert predictor.predict([]) == []
    assert list(predictor.predict_stream(iter([]), chunk=7)) == []


def test_predict_stream_in_chunks_equals_predict(predictor):
    texts = mixed_texts(50)
    whole = predictor.predict(texts)
    streamed = list(predictor.predict_stream(iter(texts), batch_size=3, chunk=7))
    assert_same(streamed, whole, tol=1e-5)


def test_predict_stream_is_lazy(predictor):
    endless = (text for text in itertools.cycle(["a lovely film", "a dull film"]))
    first = list(itertools.islice(predictor.predict_stream(endless, chunk=4), 3))
    assert len(first) == 3


def test_probabilities(predictor):
    probs = predictor.probabilities(mixed_texts(6))
    assert probs.shape == (6, 2)
    assert all(math.isclose(row.sum(), 1.0, abs_tol=1e-5) for row in probs)


# --- PredictionWriter --------------------------------------------------------------------------

PREDICTIONS = [
    Prediction("pos", 0.75, {"neg": 0.25, "pos": 0.75}),
    Prediction("neg", 0.6123456789, {"neg": 0.6123456789, "pos": 0.3876543211}),
]
LABELS = ["neg", "pos"]


def written(fmt: str, top_k: int | None, predictions=PREDICTIONS, labels=LABELS) -> str:
    handle = io.StringIO()
    writer = PredictionWriter(handle, fmt, labels, top_k)
    for prediction in predictions:
        writer.write(prediction)
    return handle.getvalue()


def test_jsonl_output():
    lines = written("jsonl", None).splitlines()
    records = [json.loads(line) for line in lines]
    assert records == [
        {"label": "pos", "score": 0.75, "scores": {"neg": 0.25, "pos": 0.75}},
        {"label": "neg", "score": 0.612346, "scores": {"neg": 0.612346, "pos": 0.387654}},
    ]


def test_jsonl_output_top_k_one():
    records = [json.loads(line) for line in written("jsonl", 1).splitlines()]
    assert [r["scores"] for r in records] == [{"pos": 0.75}, {"neg": 0.612346}]
    assert [r["label"] for r in records] == ["pos", "neg"]


def test_jsonl_output_keeps_non_ascii_labels():
    prediction = Prediction("négatif", 0.9, {"négatif": 0.9, "positif": 0.1})
    text = written("jsonl", None, [prediction], ["négatif", "positif"])
    assert "négatif" in text
    assert json.loads(text)["label"] == "négatif"


def test_csv_output():
    rows = list(csv.reader(io.StringIO(written("csv", None))))
    assert rows == [
        ["label", "score", "p_neg", "p_pos"],
        ["pos", "0.750000", "0.250000", "0.750000"],
        ["neg", "0.612346", "0.612346", "0.387654"],
    ]


def test_csv_output_top_k():
    rows = list(csv.reader(io.StringIO(written("csv", 1))))
    assert rows == [
        ["label", "score", "label_1", "score_1"],
        ["pos", "0.750000", "pos", "0.750000"],
        ["neg", "0.612346", "neg", "0.612346"],
    ]
    rows = list(csv.reader(io.StringIO(written("csv", 2))))
    assert rows[0] == ["label", "score", "label_1", "score_1", "label_2", "score_2"]
    assert rows[1] == ["pos", "0.750000", "pos", "0.750000", "neg", "0.250000"]


def test_csv_output_quotes_labels_with_commas():
    prediction = Prediction("a,b", 0.8, {"a,b": 0.8, "c": 0.2})
    rows = list(csv.reader(io.StringIO(written("csv", None, [prediction], ["a,b", "c"]))))
    assert rows == [["label", "score", "p_a,b", "p_c"], ["a,b", "0.800000", "0.800000", "0.200000"]]


def test_tsv_output_uses_tabs():
    text = written("tsv", None)
    assert text.splitlines() == [
        "label\tscore\tp_neg\tp_pos",
        "pos\t0.750000\t0.250000\t0.750000",
        "neg\t0.612346\t0.612346\t0.387654",
    ]
    assert "," not in text


def test_writer_with_real_predictions(predictor):
    predictions = predictor.predict(mixed_texts(5))
    records = [
        json.loads(line)
        for line in written("jsonl", None, predictions, predictor.labels).splitlines()
    ]
    assert [r["label"] for r in records] == [p.label for p in predictions]
    for record in records:
        assert set(record) == {"label", "score", "scores"}
        assert math.isclose(sum(record["scores"].values()), 1.0, abs_tol=1e-5)
    rows = list(csv.reader(io.StringIO(written("csv", None, predictions, predictor.labels))))
    assert rows[0] == ["label", "score", "p_neg", "p_pos"] and len(rows) == 6


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_unreadable_records_become_error_records_or_are_skipped(trained_run, tmp_path, fmt):
    from typer.testing import CliRunner

    from textlstm.cli import app

    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "superb film"}\n{"text": \n{"body": "x"}\n{"text": "awful"}\n')
    out = tmp_path / f"out.{fmt}"
    result = CliRunner().invoke(app, ["predict", str(trained_run), str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 input record(s) could not be read; wrote an error record for each" in result.stderr
    rows = out.read_text().splitlines()
    if fmt == "jsonl":
        records = [json.loads(r) for r in rows]
        assert [("error" in r) for r in records] == [False, True, True, False]
        assert (
            records[1]["error"]
            == f"{source}:2: not valid JSON (Expecting value); fix or remove that line"
        )
        assert records[2]["error"] == f"{source}:3: no key 'text'; pass --text-key"
    else:
        assert rows[0].split(",")[-1] == "error" and len(rows) == 5
        assert rows[2].startswith(",,") and rows[2].endswith("fix or remove that line")

    skipped = CliRunner().invoke(
        app, ["predict", str(trained_run), str(source), "--on-error", "skip"]
    )
    assert skipped.exit_code == 0 and len(skipped.stdout.splitlines()) == 2
    assert "skipped them" in skipped.stderr


def assert_close_to_fp32(run, predictor) -> None:
    """Same labels as fp32, scores within 0.05, and not all identical (the mode really ran)."""
    texts = [
        "a superb and lovely film",
        "awful dull boring plot",
        "the film was great",
        "dreadful terrible acting",
        "wonderful story and brilliant actor",
        "horrible scene",
    ]
    fp32 = Predictor.load(run, "cpu", precision="fp32").predict(texts)
    got = predictor.predict(texts)
    assert [p.label for p in got] == [p.label for p in fp32]
    assert max(abs(a.score - b.score) for a, b in zip(fp32, got)) < 0.05
    assert any(a.score != b.score for a, b in zip(fp32, got))


def cpu_bf16() -> str:
    from textlstm.runtime import bf16_support

    return bf16_support(torch.device("cpu"))


needs_bf16 = pytest.mark.skipif(
    cpu_bf16() == "none",
    reason="this CPU has no bfloat16 LSTM kernels "
    "(no AVX-512/AMX); the fp32 fallback is tested instead",
)


@needs_bf16
def test_bf16_predictions_agree_with_fp32_and_evaluate_keeps_both_reports(trained_run, tmp_path):
    import shutil

    from textlstm.evaluation.evaluate import evaluate

    assert_close_to_fp32(trained_run, Predictor.load(trained_run, "cpu", precision="bf16"))
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    plain = evaluate(run, "test", device="cpu")
    lower = evaluate(run, "test", device="cpu", precision="bf16")
    assert (
        plain.json_path.name == "eval-test.json" and lower.json_path.name == "eval-test-bf16.json"
    )
    assert plain.json_path.is_file() and abs(plain.report.accuracy - lower.report.accuracy) <= 0.1


def test_int8_quantization_predicts_like_fp32_with_int8_weights(trained_run, tmp_path):
    import shutil

    from textlstm.evaluation.evaluate import evaluate

    int8 = Predictor.load(trained_run, "auto", quantize="int8")
    assert int8.mode == "int8" and int8.device.type == "cpu"
    layer = int8.loaded.model.forward_layers[0]
    assert (
        "quantized" in type(layer).__module__
        and "quantized" in type(int8.loaded.model.head).__module__
    )
    assert_close_to_fp32(trained_run, int8)
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    plain = evaluate(run, "test", device="cpu")
    quantized = evaluate(run, "test", device="cpu", quantize="int8")
    assert quantized.json_path.name == "eval-test-int8.json" and quantized.precision == "int8"
    assert json.loads(quantized.json_path.read_text())["precision"] == "int8"
    assert json.loads(plain.json_path.read_text())["precision"] == "fp32"
    assert abs(plain.report.accuracy - quantized.report.accuracy) <= 0.1


class Messages(Events):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def bf16_recipe(tmp_path):
    from textlstm.recipe import load_recipe

    corpus = write_label_folders(tmp_path / "corpus")
    recipe = load_recipe(write_recipe(tmp_path / "tiny.toml", corpus))
    return recipe.model_copy(
        update={"train": recipe.train.model_copy(update={"precision": "bf16"})}
    )


@needs_bf16
def test_a_bf16_trained_run_predicts_in_bf16_by_default(tmp_path, monkeypatch):
    import textlstm.training.trainer
    from textlstm.evaluation.evaluate import evaluate
    from textlstm.training import train

    events = Messages()
    monkeypatch.setattr(textlstm.training.trainer, "bf16_support", lambda device: "emulated")
    result = train(bf16_recipe(tmp_path), tmp_path / "runs", device="cpu", events=events)
    assert any("no native bfloat16" in line and "train.precision" in line for line in events.lines)
    assert any("device cpu, " in line and line.endswith(", bf16") for line in events.lines)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss  # it learns under autocast
    monkeypatch.undo()
    native = cpu_bf16() == "native"  # without it, auto falls back to fp32
    assert Predictor.load(result.run_dir, "cpu").mode == ("bf16" if native else "fp32")
    assert Predictor.load(result.run_dir, "cpu", precision="fp32").mode == "fp32"
    own = evaluate(result.run_dir, "test", device="cpu", precision="bf16")
    full = evaluate(result.run_dir, "test", device="cpu", precision="fp32")
    assert own.json_path.name == "eval-test.json" and own.precision == "bf16"
    assert full.json_path.name == "eval-test-fp32.json" and own.json_path.is_file()


def test_bf16_falls_back_to_fp32_on_a_cpu_without_bf16_recurrent_kernels(tmp_path, monkeypatch):
    """An AVX2-only CPU has no bf16 LSTM kernel: a bf16 recipe trains in fp32 and says so, `auto`
    predicts in fp32, and an explicit bf16 request is one clear line."""
    import textlstm.runtime
    import textlstm.training.trainer
    from textlstm.errors import TextLSTMError
    from textlstm.evaluation.evaluate import evaluate
    from textlstm.training import train

    for module in (textlstm.runtime, textlstm.training.trainer):
        monkeypatch.setattr(module, "bf16_support", lambda device: "none")
    events = Messages()
    result = train(bf16_recipe(tmp_path), tmp_path / "runs", device="cpu", events=events)
    assert any("device cpu, " in line and line.endswith(", fp32") for line in events.lines)
    assert any(
        "no bfloat16 kernels for the LSTM and GRU" in line and "trains in fp32" in line
        for line in events.lines
    )
    assert json.loads((result.run_dir / "meta.json").read_text())["precision"] == "fp32"
    assert Predictor.load(result.run_dir, "cpu").mode == "fp32"
    done = evaluate(result.run_dir, "test", device="cpu")  # as it was trained: the default files
    assert done.precision == "fp32" and done.json_path.name == "eval-test.json"
    with pytest.raises(TextLSTMError) as info:
        Predictor.load(result.run_dir, "cpu", precision="bf16")
    assert info.value.lines == [
        "precision='bf16': this CPU has no bfloat16 kernels for the LSTM and "
        "GRU (they need AVX-512 or AMX); use precision='fp32' or auto"
    ]


def test_inference_mode_follows_the_run_unless_told_and_avoids_emulated_bf16():
    from textlstm.errors import TextLSTMError
    from textlstm.predict.precision import inference_mode

    assert inference_mode("auto", None, "bf16", bf16="native") == "bf16"
    assert inference_mode("auto", None, "bf16", bf16="emulated") == "fp32"
    assert inference_mode("auto", None, "bf16", bf16="none") == "fp32"
    assert inference_mode("auto", None, "fp32") == "fp32"
    assert inference_mode("bf16", None, "fp32", bf16="emulated") == "bf16"  # asked for: obeyed
    with pytest.raises(TextLSTMError, match="no bfloat16 kernels"):
        inference_mode("bf16", None, "fp32", bf16="none")
    assert inference_mode("fp32", None, "bf16") == "fp32"
    assert inference_mode("auto", "int8", "bf16") == "int8"
    with pytest.raises(TextLSTMError, match="drop precision='bf16'"):
        inference_mode("bf16", "int8", "fp32")
    with pytest.raises(TextLSTMError, match="quantize='int4': use int8"):
        inference_mode("auto", "int4", "fp32")
