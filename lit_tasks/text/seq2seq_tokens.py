"""The special tokens of sequence-to-sequence tokenizers: T5's sentinels and mBART's language codes.

T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", Sec. 3.1.4) replaces each
corrupted span by a sentinel ``<extra_id_0>``, ``<extra_id_1>``, ... (in order of appearance);
its checkpoints keep 100 of them at the top of the vocabulary in reverse order (``<extra_id_0>``
has the largest id). :func:`sentinel_ids` finds them by name, whatever their order.

mBART (Liu et al. 2020, "Multilingual Denoising Pre-training for Neural Machine Translation",
Sec. 2.1) marks a text's language with a code token (``en_XX``, ``de_DE``, ...) added after the
SentencePiece vocabulary, before ``<mask>``. Where it goes differs between the releases, as
transformers 5's tokenizers do:

- mBART-cc25 (``MBartTokenizer``): ``tokens </s> code`` for sources and targets alike;
- mBART-50 (``MBart50Tokenizer``): ``code tokens </s>``.

A pair of texts is written with both texts together in the place of ``tokens``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import processors

from lit_tasks.errors import ConfigError, DataError

SENTINEL = re.compile(r"<extra_id_(\d+)>")
LANGUAGE_CODE = re.compile(r"[a-z]{2}_[A-Z]{2}")  # fairseq's codes: en_XX, de_DE, zh_CN, ...
# tokenizer_config.json's tokenizer_class -> where the language code goes.
LANGUAGE_STYLES = {"MBartTokenizer": "suffix", "MBart50Tokenizer": "prefix"}


def tokenizer_class(config: Mapping[str, object]) -> str:
    """tokenizer_config.json's ``tokenizer_class`` without the ``Fast`` ending ('' when none)."""
    value = config.get("tokenizer_class")
    return value.removesuffix("Fast") if isinstance(value, str) else ""


def sentinel_ids(backend: RustTokenizer, config: Mapping[str, object], source: str) -> list[int]:
    """The ids of ``<extra_id_0>``, ``<extra_id_1>``, ... in that order ([] when none).

    The numbers must run from 0 without a gap, and tokenizer_config.json's ``extra_ids`` (when
    it gives a positive count) must equal how many there are."""
    found = {int(m.group(1)): i for token, i in backend.get_vocab(with_added_tokens=True).items()
             if (m := SENTINEL.fullmatch(token))}
    gaps = sorted(set(range(len(found))) - found.keys())
    if gaps:
        raise DataError(f"tokenizer {source}: the sentinel tokens run to <extra_id_{max(found)}> but "
                        f"<extra_id_{gaps[0]}> is missing ({len(gaps)} missing); expected <extra_id_0> ... "
                        f"<extra_id_{len(found) - 1}> without a gap.")
    expected = config.get("extra_ids")
    if isinstance(expected, int) and not isinstance(expected, bool) and expected > 0 and expected != len(found):
        raise DataError(f"tokenizer {source}: tokenizer_config.json says extra_ids: {expected} but the vocabulary "
                        f"holds {len(found)} sentinel tokens (<extra_id_N>); the two must agree.")
    return [found[k] for k in range(len(found))]


def language_codes(backend: RustTokenizer) -> dict[str, int]:
    """{code: id} of the language codes among the added tokens (tokens like ``en_XX``), by id."""
    added = backend.get_added_tokens_decoder()
    return {t.content: i for i, t in sorted(added.items()) if LANGUAGE_CODE.fullmatch(t.content)}


def language_style(backend: RustTokenizer, config: Mapping[str, object], codes: Mapping[str, int]) -> str | None:
    """'suffix' (mBART-cc25), 'prefix' (mBART-50) or None (no language codes): from
    tokenizer_config.json's ``tokenizer_class``, else from where tokenizer.json's template puts a code."""
    if not codes:
        return None
    if (style := LANGUAGE_STYLES.get(tokenizer_class(config))):
        return style
    post = json.loads(backend.to_str()).get("post_processor") or {}
    single = [next(iter(item.values())).get("id") for item in post.get("single", [])]
    if single and single[0] in codes:
        return "prefix"
    return "suffix"


def language_processor(
    style: str, code: str, codes: Mapping[str, int], eos: tuple[str, int],
) -> processors.TemplateProcessing:
    """The template that marks a text as being in language ``code`` (see the module docstring)."""
    lang = (code, codes[code])
    if style == "prefix":
        single, pair, specials = [code, "$A", eos[0]], [code, "$A", "$B", eos[0]], [lang, eos]
    else:
        single, pair, specials = ["$A", eos[0], code], ["$A", "$B", eos[0], code], [eos, lang]
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def check_language(code: str, codes: Mapping[str, int], source: str, option: str = "language") -> int:
    """The id of language ``code``; a ConfigError naming it and the known codes otherwise."""
    if code not in codes:
        known = ", ".join(codes) or "none: it has no language codes"
        raise ConfigError(f"tokenizer {source}: unknown {option} code {code!r}; known: {known}.")
    return codes[code]
