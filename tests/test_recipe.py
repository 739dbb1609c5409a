from pathlib import Path

import pytest

from textlstm.errors import RecipeError
from textlstm.recipe import Recipe, load_recipe, recipe_from_dict

MINIMAL = """name = "r"
[data]
dataset = "some/data"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides)
    return caught.value.lines


def test_defaults_are_filled_in(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.model.hidden_size == 128 and recipe.model.pooling == "max"
    assert recipe.train.metric == "accuracy" and recipe.tokenizer.kind == "regex"
    assert recipe.data.text == "text" and recipe.data.test_fraction == 0.0


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["train.class_weights={neg = 2.0}"])
    again = load_recipe(write(tmp_path, recipe.to_toml()))
    assert again.model_dump() == recipe.model_dump()
    assert again.train.class_weights == {"neg": 2.0}


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "[model]\nhiden_size = 64\n",
            "model.hiden_size: unknown key (did you mean 'hidden_size'?)",
        ),
        ('[model]\nhidden_size = "big"\n', "model.hidden_size: expected an integer, got 'big'"),
        (
            "[model]\ndropout = 1.5\n",
            "model.dropout: 1.5 is out of range; input should be less than 1",
        ),
        (
            '[model]\npooling = "avg"\n',
            "model.pooling: unknown choice 'avg'; expected one of 'last', 'mean', 'max', 'attention' or 'concat'",
        ),
        (
            '[train]\nmetric = "f1"\n',
            "train.metric: unknown choice 'f1'; expected one of 'accuracy', 'macro_f1' or "
            "'micro_f1'",
        ),
        (
            "[train]\nepochs = 0\n",
            'train.epochs: 0 is not a number of epochs: give 1 to 1000, or "auto"',
        ),
        (
            '[tokenizer]\nlowercase = "yes"\n',
            "tokenizer.lowercase: expected true or false, got 'yes'",
        ),
        (
            '[train]\nclass_weights = "bal"\n',
            "train.class_weights: unknown choice 'bal'; expected one of 'none', 'balanced' or "
            "'sqrt'",
        ),
        ("[trian]\nepochs = 2\n", "trian: unknown key (did you mean 'train'?)"),
    ],
)
def test_each_bad_value_gets_its_exact_line(tmp_path, body, expected):
    path = write(tmp_path, MINIMAL + body)
    assert problems(path) == [f"{path}: {expected}"]


def test_all_problems_are_reported_together(tmp_path):
    path = write(
        tmp_path, MINIMAL + '[model]\nhiden_size = 64\npooling = "avg"\n[train]\nlr = -1\n'
    )
    lines = problems(path)
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {
        "model.hiden_size",
        "model.pooling",
        "train.lr",
    }


def test_missing_required_keys(tmp_path):
    path = write(tmp_path, "seed = 1\n")
    assert problems(path) == [
        f"{path}: name: required key is missing",
        f"{path}: data: required key is missing",
    ]


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, MINIMAL + "[model\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}: TOML syntax error: ") and "line 4" in line


def test_unreadable_recipes(tmp_path):
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: recipe file not found"]
    assert problems(tmp_path) == [f"{tmp_path}: is a directory; give a recipe .toml file"]
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'name = "\xff\xfe"\n')
    assert problems(binary) == [f"{binary}: not UTF-8 text; save the recipe as UTF-8"]


def test_run_names_cannot_escape_the_output_folder(tmp_path):
    path = write(tmp_path, MINIMAL.replace('"r"', '"../../x"'))
    (line,) = problems(path)
    assert line.startswith(f"{path}: name: '../../x' is not allowed")


def test_overrides_set_values_and_are_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(
        path,
        [
            "model.hidden_size=256",
            'data.text=["a", "b"]',
            "data.dataset=plain/string",
            "model.bidirectional=false",
        ],
    )
    assert recipe.model.hidden_size == 256 and recipe.data.text == ["a", "b"]
    assert recipe.data.dataset == "plain/string" and recipe.model.bidirectional is False
    assert problems(path, ["model.hiden_size=3"]) == [
        "overrides: model.hiden_size: unknown key (did you mean 'hidden_size'?)"
    ]
    assert problems(path, ["model.hidden_size"]) == [
        "overrides='model.hidden_size': expected KEY=VALUE, e.g. overrides='model.hidden_size=256'"
    ]
    assert problems(path, ["name.x=1"]) == ["overrides='name.x': 'name' is not a section"]


def test_recipe_is_frozen():
    recipe = recipe_from_dict({"name": "r", "data": {"dataset": "d"}})
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        recipe.seed = 3  # type: ignore[misc]
    assert isinstance(recipe, Recipe)


BUNDLED = sorted(p.stem for p in (Path(__file__).parent.parent / "recipes").glob("*.toml"))


def test_every_bench_recipe_is_bundled():
    assert {"bbc-news", "bbc-news-ngrams", "imdb", "sst2", "sst2-glove", "ag_news"} <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_recipes_are_valid_and_commented(name):
    path = Path(__file__).parent.parent / "recipes" / f"{name}.toml"
    recipe = load_recipe(path)
    header = path.read_text().splitlines()[0]
    assert header.startswith("# ")
    if name.endswith("-lm"):  # a language model's: `pretrain` writes runs/<name>-lm/
        assert recipe.name + "-lm" == name  # more text, or an earlier language model's
        assert recipe.pretrain.unlabelled or recipe.model.encoder is not None
        assert f"textlstm pretrain recipes/{name}.toml" in path.read_text()
        return
    assert recipe.name == name
    assert f"textlstm train recipes/{name}.toml" in path.read_text()


def test_a_key_named_like_a_pydantic_union_tag_is_reported_as_a_key():
    # found by test_fuzz: pydantic's union members ("literal[...]", "str") were dropped from
    # every error's key, so a top-level key of that name left an empty key and a crash
    with pytest.raises(RecipeError) as caught:
        recipe_from_dict({"literal[": []}, "f.toml")
    assert caught.value.lines[-1] == (
        "f.toml: literal[: unknown key; valid keys: name, seed, data, tokenizer, vocab, model, "
        "train, tune, pretrain"
    )
