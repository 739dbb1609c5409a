"""The ``textlstm`` command: thin Typer shims over the library, with rich output.

Heavy imports (torch, datasets) happen inside the commands so ``textlstm --help`` stays fast.
Every TextLSTMError becomes one red line per problem on stderr and exit code 2.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from textlstm.errors import TextLSTMError

app = typer.Typer(help="LSTM text classification from TOML recipes.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Overrides = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a recipe key, e.g. --set model.hidden_size=256 (repeatable).")]
DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", envvar="TEXTLSTM_DATA_DIR",
    help="Root of local dataset mirrors: <root>/<hub id> is used instead of the hub.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="auto (as the run was trained: its train.precision), fp32, or bf16: "
                        "bfloat16 autocast, about 2x faster on CPUs with avx512_bf16.")]
Quantize = Annotated[Optional[str], typer.Option(
    "--quantize", help="int8: PyTorch dynamic int8 quantization of the LSTM and linear layers "
                       "(CPU; see bench/README.md for its speed here).")]
VocabDir = Annotated[Optional[Path], typer.Option(
    "--vocab-dir", envvar="TEXTLSTM_VOCAB_DIR",
    help="Where `textlstm vocab` keeps vocabularies and training looks for them (default: vocab).")]
CacheDir = Annotated[Optional[Path], typer.Option(
    "--cache-dir", envvar="TEXTLSTM_CACHE",
    help="Preprocessing cache (token ids, vocabularies) (default: ~/.cache/textlstm).")]
NoCache = Annotated[bool, typer.Option(
    "--no-cache", help="Neither read nor write the preprocessing cache.")]


def _options(vocab_dir: Path | None, cache_dir: Path | None, no_cache: bool) -> Any:
    from textlstm.text.cache import Options, default_cache_dir, default_vocab_dir

    return Options(vocab_dir=vocab_dir or default_vocab_dir(),
                   cache_dir=None if no_cache else cache_dir or default_cache_dir())


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Input errors: one red line each and exit 2. Ctrl-C: one line and exit 130."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TextLSTMError as exc:
            from rich.markup import escape

            for line in exc.lines:
                err.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True, markup=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # e.g. `textlstm predict RUN in.txt | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
    return wrapper


@app.command()
@guarded
def train(recipe: Annotated[Optional[Path], typer.Argument(help="Recipe .toml file.")] = None,
          overrides: Overrides = None, data_dir: DataDir = None, device: Device = "auto",
          out_dir: Annotated[Path, typer.Option("--out", help="Parent folder of run folders.")] = Path("runs"),
          vocab_dir: VocabDir = None, cache_dir: CacheDir = None, no_cache: NoCache = False,
          resume: Annotated[Optional[Path], typer.Option(
              "--resume", help="Continue a killed (.partial) or interrupted run folder.")] = None,
          ) -> None:
    """Train a model from a recipe; writes a run folder under --out/<recipe name>/."""
    from textlstm.errors import TextLSTMError
    from textlstm.recipe import load_recipe
    from textlstm.training import resume as resume_run
    from textlstm.training import train as train_model

    options = _options(vocab_dir, cache_dir, no_cache)
    if (recipe is None) == (resume is None):
        raise TextLSTMError("train: give a recipe file, or --resume RUN_FOLDER (not both)")
    if resume is not None:
        if overrides:
            raise TextLSTMError("--set: a resumed run keeps the recipe it started with")
        out.print(f"[bold]resuming[/bold] {resume}")
        with TrainProgress("accuracy") as events:
            result = resume_run(resume, data_dir, device, events, options)
    else:
        assert recipe is not None
        loaded = load_recipe(recipe, overrides)
        out.print(f"[bold]training[/bold] {loaded.name} from {recipe}")
        with TrainProgress(loaded.train.metric) as events:
            result = train_model(loaded, out_dir, data_dir, device, events, options)
    best = result.epochs[result.best_epoch - 1]
    out.print(f"[green]done[/green] in {result.seconds:.0f}s ({result.stopped.replace('_', ' ')}); "
              f"best epoch {result.best_epoch}: validation accuracy {best.accuracy:.2%}, "
              f"macro-F1 {best.macro_f1:.2%}")
    out.print(f"run folder: [bold]{result.run_dir}[/bold]", soft_wrap=True)
    split = "test" if "test" in result.splits else "validation"
    out.print(f"next: textlstm evaluate {result.run_dir} --split {split}")


@app.command()
@guarded
def check(recipe: Annotated[Path, typer.Argument(help="Recipe .toml file.")],
          overrides: Overrides = None, data_dir: DataDir = None) -> None:
    """Validate a recipe, print it resolved and summarize its data, without training."""
    from rich.syntax import Syntax

    from textlstm.recipe import load_recipe
    from textlstm.data.summary import PERCENTILES, summarize

    loaded = load_recipe(recipe, overrides)
    out.print(f"[green]ok[/green] {recipe} is valid; resolved recipe:")
    out.print(Syntax(loaded.to_toml(), "toml", theme="ansi_dark", background_color="default"))
    summary = summarize(loaded, data_dir)
    for note in summary.notes:
        out.print(f"note: {note}")
    counts = Table("label", *[s.name for s in summary.splits], title=f"data: {summary.source}",
                   title_justify="left")
    counts.add_row("[bold]rows[/bold]", *[f"{s.rows:,}" for s in summary.splits])
    for label in summary.labels:
        counts.add_row(label, *[f"{s.label_counts[label]:,}" for s in summary.splits])
    out.print(counts)
    lengths = Table("split", *["max" if p == 100 else f"p{p}" for p in PERCENTILES],
                    f"> max_length ({loaded.tokenizer.max_length})",
                    title=f"text length in {summary.unit} (before truncation)", title_justify="left")
    for s in summary.splits:
        lengths.add_row(s.name, *[f"{s.length_percentiles[p]:,}" for p in PERCENTILES],
                        f"{s.truncated_share:.1%}")
    out.print(lengths)


@app.command()
@guarded
def vocab(recipe: Annotated[Path, typer.Argument(help="Recipe .toml file.")],
          overrides: Overrides = None, data_dir: DataDir = None, vocab_dir: VocabDir = None,
          cache_dir: CacheDir = None, no_cache: NoCache = False,
          top: Annotated[int, typer.Option(help="How many frequent tokens to show.")] = 20) -> None:
    """Build a recipe's vocabulary (or subword tokenizer) into --vocab-dir for runs to reuse."""
    from textlstm.recipe import load_recipe
    from textlstm.data.summary import build_vocabulary

    loaded = load_recipe(recipe, overrides)
    summary = build_vocabulary(loaded, data_dir, _options(vocab_dir, cache_dir, no_cache), top)
    for message in summary.messages:
        out.print(f"note: {message}", soft_wrap=True, markup=False)
    action = "wrote" if summary.written else "up to date:" if loaded.vocab.path is None else "pinned:"
    out.print(f"[green]{action}[/green] [bold]{summary.path}[/bold]", soft_wrap=True)
    out.print(f"{summary.kind} vocabulary: {summary.size:,} entries; {summary.train_tokens:,} "
              f"training tokens; {summary.validation_oov:.2%} of validation tokens are "
              "out of vocabulary (<unk>)")
    table = Table("token", "count", title="most frequent training tokens", title_justify="left")
    for token, count in summary.top:
        table.add_row(repr(token)[1:-1], f"{count:,}")
    out.print(table)


@app.command()
@guarded
def tune(recipe: Annotated[Path, typer.Argument(help="Recipe .toml file with a tune section.")],
         overrides: Overrides = None, data_dir: DataDir = None, device: Device = "auto",
         out_dir: Annotated[Path, typer.Option("--out", help="Parent of <name>-tune/.")] = Path("runs"),
         trials: Annotated[Optional[int], typer.Option(min=1, help="Finished trials wanted (default: tune.trials).")] = None,
         timeout: Annotated[Optional[float], typer.Option(help="Seconds for this call (default: tune.timeout).")] = None,
         no_prune: Annotated[bool, typer.Option("--no-prune", help="Run every trial to the end.")] = False,
         jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes on this machine.")] = 1,
         storage: Annotated[Optional[str], typer.Option(
             help="Database URL of a study shared by several machines, e.g. postgresql://user:pw@host/db.")] = None,
         keep: Annotated[Optional[int], typer.Option(min=1, help="Keep only the best N trial run folders (default: tune.keep, else all).")] = None,
         retrain: Annotated[bool, typer.Option("--retrain", help="Then train the best configuration as tune.retrain says.")] = False,
         vocab_dir: VocabDir = None, cache_dir: CacheDir = None, no_cache: NoCache = False) -> None:
    """Random (or TPE) search over the recipe's tune.space; resumes the same study when run again."""
    from textlstm.recipe import load_recipe
    from textlstm.tuning.study import retrain_best
    from textlstm.tuning import tune as run_tune

    loaded = load_recipe(recipe, overrides)
    options = _options(vocab_dir, cache_dir, no_cache)
    keys = list(loaded.tune.space) if loaded.tune else []
    metric = loaded.tune.metric if loaded.tune else "accuracy"
    with TuneTable(keys, metric, live=out.is_terminal) as events:
        result = run_tune(loaded, out_dir, trials, timeout, not no_prune, data_dir, device, events,
                          options, jobs=jobs, storage=storage, keep=keep)
    names = _column_names(list(result.best_params))
    board = Table("trial", "state", result.metric, "best epoch", "seconds", "run folder", *names,
                  title="leaderboard", title_justify="left")
    ranked = sorted(result.trials, key=lambda t: (t.orphaned, t.state != "COMPLETE",
                                                  -(t.value or 0.0), t.number))
    for t in ranked:
        board.add_row(str(t.number), "rerun" if t.orphaned else t.state.lower(),
                      f"{t.value:.4f}" if t.value is not None else "-",
                      str(t.best_epoch or "-"),
                      f"{t.seconds:.0f}" if t.seconds is not None else "-",
                      "kept" if t.run_dir else "-",
                      *[_short(t.params.get(k)) for k in result.best_params])
    # a log file need not wrap the table at 80 columns
    (out if out.is_terminal else Console(width=200, highlight=False)).print(board)
    out.print(f"best: trial {result.best_trial}, validation {result.metric} "
              f"{result.best_value:.4f} with "
              + ", ".join(f"{k} = {_short(v)}" for k, v in result.best_params.items()),
              soft_wrap=True)
    for plot in result.plots:
        out.print(f"[green]wrote[/green] {plot}", soft_wrap=True)
    out.print(f"[green]wrote[/green] {result.best_recipe}; next: textlstm train {result.best_recipe}",
              soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)
    if retrain:
        with TrainProgress(loaded.train.metric) as progress:
            trained = retrain_best(loaded, result, data_dir, device, progress, options)
        out.print(f"[green]retrained[/green] in {trained.seconds:.0f}s: {trained.run_dir}",
                  soft_wrap=True)
        out.print(f"next: textlstm evaluate {trained.run_dir}", soft_wrap=True)


def _column_names(keys: list[str]) -> list[str]:
    """`train.lr` -> `lr`, unless two keys would share a name."""
    last = [key.split(".")[-1] for key in keys]
    return [name if last.count(name) == 1 else key for key, name in zip(keys, last)]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TuneTable:
    """The trials as a live table on a terminal, and a line as each trial starts and ends (the
    library's TuneEvents, drawn with rich)."""

    SHOWN = 20  # rows in the live table: the latest trials

    def __init__(self, keys: list[str], metric: str, live: bool = True, console: Any = None) -> None:
        from rich.live import Live

        self.keys, self.metric, self.console = keys, metric, console or out
        self.rows: dict[int, dict[str, Any]] = {}
        self.live = (Live(self, console=self.console, refresh_per_second=2, transient=True)
                     if live else None)

    def __enter__(self) -> "TuneTable":
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()

    def __rich__(self) -> Table:
        import time

        table = Table("trial", "state", "epoch", self.metric, "seconds",
                      *_column_names(self.keys), title="trials", title_justify="left")
        for number in sorted(self.rows)[-self.SHOWN:]:
            row = self.rows[number]
            seconds = row["seconds"] if row["seconds"] is not None else time.time() - row["began"]
            table.add_row(str(number), row["state"], str(row["epoch"] or "-"),
                          f"{row['value']:.4f}" if row["value"] is not None else "-",
                          f"{seconds:.0f}", *[_short(row["params"].get(k)) for k in self.keys])
        return table

    def message(self, text: str) -> None:
        self.console.print(text, soft_wrap=True, markup=False)

    def trial_start(self, number: int, params: dict[str, Any]) -> None:
        import time

        self.rows[number] = {"params": params, "state": "running", "epoch": 0, "value": None,
                             "began": time.time(), "seconds": None}
        self.console.print(f"trial {number}: " + ", ".join(f"{k} = {_short(v)}" for k, v in params.items()),
                           soft_wrap=True, markup=False)

    def trial_epoch(self, number: int, epoch: int, value: float) -> None:
        if number in self.rows:
            self.rows[number].update(epoch=epoch, value=value)

    def trial_end(self, trial: Any) -> None:
        import time

        row = self.rows.setdefault(trial.number, {"params": trial.params, "epoch": 0,
                                                  "began": time.time()})
        row.update(state="rerun" if trial.orphaned else trial.state.lower(), value=trial.value,
                   seconds=trial.seconds or 0.0)
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        extra = f" ({trial.reason})" if trial.reason else ""
        self.console.print(f"trial {trial.number}: {trial.state.lower()} {value}{extra}",
                           soft_wrap=True, markup=False)

    def epoch_start(self, *args: Any) -> None: ...

    def batch_end(self, *args: Any) -> None: ...

    def epoch_end(self, *args: Any) -> None: ...


@app.command()
@guarded
def evaluate(run: Annotated[Path, typer.Argument(help="A finished run folder.")],
             split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "test",
             data: Annotated[Optional[str], typer.Option(
                 help="Other labelled data: hub id, folder or .csv/.tsv/.jsonl/.parquet file.")] = None,
             text_column: Annotated[Optional[str], typer.Option(help="Text column in --data.")] = None,
             label_column: Annotated[Optional[str], typer.Option(help="Label column in --data.")] = None,
             data_dir: DataDir = None, device: Device = "auto", precision: Precision = "auto",
             quantize: Quantize = None) -> None:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of a run."""
    from textlstm.evaluation import evaluate as evaluate_run

    result = evaluate_run(run, split, data, data_dir, device, text_column, label_column,
                          precision=precision, quantize=quantize)
    for note in result.notes:
        out.print(f"note: {note}")
    rep = result.report
    out.print(f"[bold]{result.name}[/bold] ({result.precision}): {rep.rows:,} rows, accuracy [bold]{rep.accuracy:.2%}"
              f"[/bold], macro-F1 [bold]{rep.macro_f1:.2%}[/bold], loss {rep.loss:.4f}")
    scores = Table("label", "precision", "recall", "F1", "support", title="per class",
                   title_justify="left")
    for row in rep.per_class:
        scores.add_row(row.label, f"{row.precision:.3f}", f"{row.recall:.3f}", f"{row.f1:.3f}",
                       f"{row.support:,}")
    out.print(scores)
    matrix = Table("true \\ predicted", *rep.labels, title="confusion matrix", title_justify="left")
    for label, counts in zip(rep.labels, rep.confusion):
        matrix.add_row(label, *[f"{c:,}" for c in counts])
    out.print(matrix)
    out.print(f"report: {result.json_path}\nconfusion plot: {result.plot_path}")


@app.command()
@guarded
def predict(run: Annotated[Path, typer.Argument(help="A finished run folder.")],
            inputs: Annotated[list[str], typer.Argument(
                help="Files to classify: .txt (a text per line), .csv/.tsv, .jsonl, or - for stdin.")],
            output: Annotated[Optional[Path], typer.Option(
                "-o", "--output", help="Write here (.jsonl, .csv or .tsv) instead of stdout.")] = None,
            text_column: Annotated[str, typer.Option(help="Text column of .csv/.tsv input.")] = "text",
            text_key: Annotated[str, typer.Option(help="Text key of .jsonl input.")] = "text",
            top_k: Annotated[Optional[int], typer.Option(
                min=1, help="Keep only the k likeliest classes in the output.")] = None,
            batch_size: Annotated[int, typer.Option(min=1)] = 256,
            on_error: Annotated[str, typer.Option(
                help="A record that cannot be read (broken JSON line, ragged CSV row): "
                     "record (write an error record in its place), skip, or fail.")] = "record",
            device: Device = "auto", precision: Precision = "auto", quantize: Quantize = None
            ) -> None:
    """Classify texts; one output record per input text, in input order."""
    from textlstm.errors import DataError
    from textlstm.predict import (ON_ERROR, OUTPUT_FORMATS, BadRecord, PredictionWriter,
                                  Predictor, read_inputs)

    if on_error not in ON_ERROR:
        raise DataError(f"--on-error {on_error}: use one of {', '.join(ON_ERROR)}")

    fmt = "jsonl"
    if output is not None:
        fmt = OUTPUT_FORMATS.get(output.suffix.lower(), "")
        if output.is_dir():
            raise DataError(f"{output}: is a folder; give an output file name")
        if not fmt:
            raise DataError(f"{output}: unknown output type; use .jsonl, .csv or .tsv")
    predictor = Predictor.load(run, device, precision, quantize)
    for name in inputs:  # a bad input file fails here, before anything is written
        if name != "-":
            next(read_inputs(name, text_column, text_key, on_error), None)
    items = (item for name in inputs for item in read_inputs(name, text_column, text_key, on_error))
    target = output.with_name(output.name + ".partial") if output else None
    handle = open(target, "w", encoding="utf-8", newline="") if target else sys.stdout
    count = bad = 0
    try:
        writer = PredictionWriter(handle, fmt, predictor.labels, top_k, on_error == "record")
        for block in predictor.predict_chunks(items, batch_size):
            for result in block:
                if isinstance(result, BadRecord):
                    bad += 1
                    if on_error == "record":
                        writer.write_error(result)
                    continue
                writer.write(result)
                count += 1
            handle.flush()  # whole records only: an interrupted run leaves a valid prefix
    except BaseException:
        if target:
            handle.close()
            target.unlink(missing_ok=True)
        raise
    if target and output:
        handle.close()
        target.replace(output)
        err.print(f"wrote {count:,} predictions to {output}")
    if bad:
        done = "wrote an error record for each" if on_error == "record" else "skipped them"
        err.print(f"[yellow]warning:[/yellow] {bad:,} input record(s) could not be read; {done}")


class TrainProgress:
    """Draws a progress bar per epoch and a table row after each one."""

    def __init__(self, metric: str) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self.metric = metric
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:,.0f} tok/s"),
            TimeRemainingColumn(), console=out, transient=True)
        self.task: Any = None
        self.started = False

    def __enter__(self) -> "TrainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.progress.stop()

    def message(self, text: str) -> None:
        out.print(text, soft_wrap=True, markup=False)

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        import time

        if not self.started:  # started late, so an input error is not preceded by a live display
            out.print("[bold]epoch  train loss  val loss  val acc  val macro-F1   tok/s    time[/bold]")
            self.progress.start()
            self.started = True
        self.epoch_began, self.tokens, self.loss = time.perf_counter(), 0, None
        self.task = self.progress.add_task("train", total=batches, epoch=f"{epoch}/{epochs}",
                                           loss=0.0, speed=0.0)

    def batch_end(self, loss: float, tokens: int) -> None:
        import time

        self.tokens += tokens
        self.loss = loss if self.loss is None else 0.95 * self.loss + 0.05 * loss
        speed = self.tokens / max(time.perf_counter() - self.epoch_began, 1e-9)
        self.progress.update(self.task, advance=1, loss=self.loss, speed=speed)

    def epoch_end(self, result: Any) -> None:
        self.progress.remove_task(self.task)
        star = " [green]*[/green]" if result.best else ""
        out.print(
            f"{result.epoch:>5}  {result.train_loss:>10.4f}  {result.validation_loss:>8.4f}  "
            f"{result.accuracy:>7.2%}  {result.macro_f1:>12.2%}  {result.tokens_per_second:>7,.0f}"
            f"  {result.seconds:>5.0f}s{star}")


def main() -> None:
    """Usage errors (an unknown option, a value out of range) get one line too, not a box."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except Exception as exc:  # Typer's vendored click exceptions have no public names
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed
            sys.exit(2)
        if getattr(exc, "exit_code", None) != 2 or not hasattr(exc, "format_message"):
            raise
        names, ctx = [], getattr(exc, "ctx", None)
        while ctx is not None and ctx.parent is not None:  # the root's name may be "python -m ..."
            names.insert(0, ctx.info_name)
            ctx = ctx.parent
        command = " ".join(["textlstm", *names])
        err.print(f"[red]error:[/red] {exc.format_message()} (see: {command} --help)",
                  soft_wrap=True, markup=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
