"""Every bad option and every malformed prompt fails with an error that names it."""

from __future__ import annotations

import pytest
import torch

from lit_tasks.errors import ConfigError, DataError
from lit_tasks.generation import GenerationConfig, generate


def test_from_dict_rejects_an_unknown_option_and_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        GenerationConfig.from_dict({"max_new_tokens": 4, "max_length": 30, "topk": 5}, "recipe.yaml: generation")
    message = str(e.value)
    assert "recipe.yaml: generation" in message and "'max_length'" in message and "'topk'" in message
    assert "'max_new_tokens'" in message and "'top_k'" in message and "'early_stopping'" in message


def test_from_dict_builds_from_plain_data():
    config = GenerationConfig.from_dict({"num_beams": 4, "eos_token_id": [1, 2], "stop_strings": ["\n\n"],
                                         "early_stopping": "never", "num_return_sequences": 2})
    assert config.eos_ids == (1, 2) and config.stops == ("\n\n",) and config.fill_id == 1


BAD = [  # (options, the option the message names, a fragment of what it expects)
    (dict(max_new_tokens=0), "max_new_tokens", ">= 1"),
    (dict(max_new_tokens=2.5), "max_new_tokens", "integer"),
    (dict(min_new_tokens=-1), "min_new_tokens", ">= 0"),
    (dict(min_new_tokens=30, max_new_tokens=20), "min_new_tokens", "at most max_new_tokens (20)"),
    (dict(min_new_tokens=3), "min_new_tokens", "without eos_token_id"),
    (dict(do_sample="yes"), "do_sample", "true or false"),
    (dict(num_beams=0), "num_beams", ">= 1"),
    (dict(num_beams=2, early_stopping="always"), "early_stopping", '"never"'),
    (dict(no_repeat_ngram_size=-2), "no_repeat_ngram_size", ">= 0"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences", "at most num_beams (2)"),
    (dict(num_return_sequences=2), "num_return_sequences", "greedy"),
    (dict(do_sample=True, temperature=0.0), "temperature", "> 0"),
    (dict(do_sample=True, temperature=-1), "temperature", "> 0"),
    (dict(do_sample=True, top_k=0), "top_k", ">= 1"),
    (dict(do_sample=True, top_p=0.0), "top_p", "(0, 1]"),
    (dict(do_sample=True, top_p=1.5), "top_p", "(0, 1]"),
    (dict(repetition_penalty=0.0), "repetition_penalty", "> 0"),
    (dict(eos_token_id=-1), "eos_token_id", "token id"),
    (dict(eos_token_id=[]), "eos_token_id", "non-empty"),
    (dict(eos_token_id=[3, "x"]), "eos_token_id", "token id"),
    (dict(pad_token_id=-5), "pad_token_id", "token id"),
    (dict(stop_strings=""), "stop_strings", "non-empty"),
    (dict(stop_strings=["a", 3], eos_token_id=1), "stop_strings", "string"),
    (dict(stop_strings="\n"), "pad_token_id", "stop_strings"),
    (dict(do_sample=True, seed="0"), "seed", "integer"),
    (dict(use_cache=1), "use_cache", "true or false"),
    # options the chosen strategy would ignore
    (dict(temperature=0.7), "temperature", "do_sample"),
    (dict(top_k=5), "top_k", "do_sample"),
    (dict(top_p=0.9), "top_p", "do_sample"),
    (dict(seed=3), "seed", "do_sample"),
    (dict(length_penalty=2.0), "length_penalty", "num_beams"),
    (dict(early_stopping=True), "early_stopping", "num_beams"),
]


@pytest.mark.parametrize("options, option, expected", BAD, ids=[f"{o}-{i}" for i, (_, o, _) in enumerate(BAD)])
def test_a_bad_value_names_the_option_and_what_is_expected(options, option, expected):
    with pytest.raises(ConfigError) as e:
        GenerationConfig.from_dict(options, "my.yaml")
    message = str(e.value)
    assert message.startswith("my.yaml: ") and f"{option}=" in message and expected in message, message


# -- generate's own checks --------------------------------------------------------------------------
def _fails(tiny, error, fragments, ids=None, mask=None, **options):
    ids = tiny.ids if ids is None else ids
    with pytest.raises(error) as e:
        generate(tiny.ours, ids, mask, **options)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


def test_an_empty_prompt_is_refused(tiny):
    _fails(tiny, DataError, ["empty", "(4, 0)"], ids=torch.zeros(4, 0, dtype=torch.long))


def test_a_row_without_a_real_token_is_named(tiny):
    mask = tiny.mask.clone()
    mask[2] = 0
    _fails(tiny, DataError, ["row(s) [2]", "no real token"], mask=mask)


def test_right_padding_is_refused_with_the_rows_named(tiny):
    mask = torch.ones_like(tiny.mask)
    mask[1, -2:] = 0
    mask[3, -1] = 0
    _fails(tiny, DataError, ["row(s) [1, 3]", "left"], mask=mask)


def test_a_mask_of_another_shape_is_refused(tiny):
    _fails(tiny, DataError, ["attention_mask has shape (4, 5)", "(4, 6)"], mask=tiny.mask[:, 1:])
    _fails(tiny, DataError, ["only 0", "1"], mask=tiny.mask * 2)
    _fails(tiny, DataError, ["(batch, length)", "(6,)"], ids=tiny.ids[0])


def test_a_prompt_past_the_context_length_names_the_numbers(tiny):
    _fails(tiny, ConfigError, ["6 columns", "max_new_tokens=35", "6 + 35 = 41", "context length of 40",
                               "truncate_left(input_ids, attention_mask, 5)"], mask=tiny.mask, max_new_tokens=35)
    generate(tiny.ours, tiny.ids, tiny.mask, max_new_tokens=34)  # 6 + 34 = 40 fits


def test_an_eos_id_outside_the_vocabulary_is_named(tiny):
    _fails(tiny, ConfigError, ["eos_token_id=[3, 60, 99]", "[60, 99]", "60 tokens"], max_new_tokens=2,
           eos_token_id=[3, 60, 99], num_beams=2)


def test_stop_strings_need_a_tokenizer(tiny):
    _fails(tiny, ConfigError, ["stop_strings='###'", "tokenizer"], stop_strings="###", pad_token_id=0)


def test_an_unknown_option_passed_to_generate_is_named(tiny):
    _fails(tiny, ConfigError, ["generate()", "'max_length'", "valid options"], max_length=12)
