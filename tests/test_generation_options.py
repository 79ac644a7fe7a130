"""The new decoding options: validation in GenerationConfig and in ``megasense generate`` (no model loaded for a
mistake), and one end-to-end run of the command on the embedded SmolLM2."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from megasense.cli.main import _register, app
from megasense.config import ConfigError, GenerationConfig
from megasense.errors import MegasenseInputError
from megasense.inference.generation import AUTO_MIN_PARAMETERS, resolve_generation_precision


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_p": math.nan}, "min_p=nan must be a finite number"),
        ({"min_p": 1.5}, "min_p=1.5 must be in [0, 1]"),
        ({"min_p": -0.1}, "min_p=-0.1 must be in [0, 1]"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size=-1 must be >= 0"),
        ({"min_new_tokens": 9, "max_new_tokens": 8}, "min_new_tokens=9 must be between 0 and max_new_tokens=8"),
        ({"num_return_sequences": 0}, "num_return_sequences=0 must be at least 1"),
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences=3 cannot exceed num_beams=2"),
        ({"num_return_sequences": 2}, "with greedy decoding would repeat one output"),
        ({"num_beams": 2, "early_stopping": "sometimes"}, "early_stopping='sometimes' must be True, False or 'never'"),
        ({"length_penalty": math.inf}, "length_penalty=inf must be a finite number"),
    ],
)
def test_config_refuses_bad_values_with_the_numbers(options, message):
    with pytest.raises(ConfigError) as caught:
        GenerationConfig(**options)
    assert message in str(caught.value)


def test_config_accepts_the_new_options():
    config = GenerationConfig(
        do_sample=True, min_p=0.05, no_repeat_ngram_size=3, min_new_tokens=4, num_return_sequences=3, max_new_tokens=8
    )
    assert (config.min_p, config.no_repeat_ngram_size, config.min_new_tokens) == (0.05, 3, 4)
    beams = GenerationConfig(num_beams=4, num_return_sequences=4, early_stopping="never", length_penalty=0.5)
    assert beams.early_stopping == "never"


def test_precision_choices():
    assert resolve_generation_precision("fp32") == "fp32"
    assert resolve_generation_precision("auto", "cpu") == "int4"
    with pytest.raises(MegasenseInputError, match="unknown generation precision 'fp16'; choose one of auto, fp32"):
        resolve_generation_precision("fp16")
    with pytest.raises(MegasenseInputError, match="uses CPU kernels"):
        resolve_generation_precision("int4", "cuda")
    assert AUTO_MIN_PARAMETERS > 1_000_000  # tiny test models keep the exact path under auto


def _cli(*args: str):
    if not any(c.name == "generate" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, ["generate", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-p", "nan"], "min_p=nan must be a finite number"),
        (["--top-p", "nan"], "top_p=nan must be a finite number"),
        (["--no-repeat-ngram-size", "-2"], "no_repeat_ngram_size=-2 must be >= 0"),
        (["--min-new-tokens", "50", "--max-new-tokens", "10"], "min_new_tokens=50 must be between 0"),
        (["--beams", "2", "-n", "3"], "num_return_sequences=3 cannot exceed num_beams=2"),
        (["--early-stopping", "soon", "--beams", "2"], "--early-stopping 'soon': expected true, false or never"),
        (["--precision", "fp16"], "unknown generation precision 'fp16'"),
    ],
)
def test_cli_refuses_bad_options_in_one_line_before_loading_a_model(args, message):
    result = _cli("hello", "--model", "no-such-model", *args)  # a bad option is caught before the model loads
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_cli_prints_several_beams_and_samples_with_smollm2():
    from megasense.zoo.embedded import ModelNotInstalledError, find_embedded

    try:
        find_embedded("smollm2-135m-instruct")
    except ModelNotInstalledError as exc:
        pytest.skip(str(exc))
    result = _cli("What is 2 + 2?", "--beams", "3", "-n", "2", "--max-new-tokens", "6", "--no-repeat-ngram-size", "2")
    assert result.exit_code == 0, result.output
    assert "1 of 2" in result.stdout and "2 of 2" in result.stdout
    sampled = _cli("Name a colour.", "--sample", "--min-p", "0.1", "--seed", "3", "--max-new-tokens", "5", "--stream")
    assert sampled.exit_code == 0 and sampled.stdout.strip(), sampled.output
