"""GenerationConfig: every decoding option `generate` honours, checked when it is built.

The names and meanings are HF `GenerationConfig`'s (so a `generation_config.json` reads
across), with three differences stated where they apply: `max_new_tokens` is the only length
limit (no `max_length`), sampling filters are off unless set (`top_k` None, where HF's
default is 50), and nothing comes from the model's config unless asked for
(`generation_defaults(model.config)`; HF's generate reads its model's generation_config). An
option that would have no effect with the chosen strategy (a temperature without `do_sample`,
a length penalty without beams) is an error, not silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lit_tasks.errors import ConfigError


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding options.

    Length: `max_new_tokens` (>= 1) new tokens at most; `min_new_tokens`: the eos ids are
    forbidden before that many new tokens.
    Strategy: greedy (the default), sampling (`do_sample`), beam search (`num_beams` > 1), or
    beam sampling (both).
    Beam search: `length_penalty` (a finished hypothesis scores sum(log p) / n ** length_penalty,
    n = its new tokens, eos included), `early_stopping` (True: a prompt is done once `num_beams`
    hypotheses are finished; False: also done when the best running beam, scored at its current
    length, cannot beat the worst finished one; "never": the same test at `max_new_tokens` when
    length_penalty > 0, the canonical beam search), `num_return_sequences` (<= num_beams) best first.
    Scores: `repetition_penalty` (> 0, 1 = off), `no_repeat_ngram_size` (0 = off).
    Sampling: `temperature` (> 0), `top_k` (None = off), `top_p` (in (0, 1], 1 = off),
    `num_return_sequences` samples per prompt, `seed` (None: torch's global generator).
    Stopping: `eos_token_id` (one id or several), `stop_strings` (decoded text, needs a tokenizer);
    finished rows are filled with `pad_token_id` (None: the first eos id, as HF).
    Encoder-decoders: `decoder_start_token_id` starts every decoder sequence (required for them,
    an error for decoder-only models); `forced_bos_token_id`: the only allowed first new token
    (after a one-token decoder prompt; mBART's target language code); `forced_eos_token_id`
    (one id or several): the only allowed tokens at the last step, new token max_new_tokens
    (BART ends every output that runs to the limit with eos; decoder-only models take it too).
    `use_cache`: feed each step only the new token over a KV cache (False: recompute the whole
    sequence every step; for tests and models without a cache).
    """

    max_new_tokens: int = 20
    min_new_tokens: int = 0
    do_sample: bool = False
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    no_repeat_ngram_size: int = 0
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | tuple[int, ...] | None = None
    stop_strings: str | tuple[str, ...] | None = None
    seed: int | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        # lists (YAML, JSON) become tuples: hashable, immutable
        for name in ("eos_token_id", "forced_eos_token_id", "stop_strings"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "generation config") -> GenerationConfig:
        """Build from plain data (a YAML section, a generation_config.json); an unknown option or
        a bad value is a ConfigError that names `source` and the option."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            raise ConfigError(f"{source}: unknown generation option(s) {unknown}; valid options are {known}")
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    def replace(self, source: str = "generate()", **changes: Any) -> GenerationConfig:
        """A copy with `changes` applied, checked as `from_dict` checks."""
        return GenerationConfig.from_dict({**dataclasses.asdict(self), **changes}, source)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """The eos ids as a tuple (empty without any)."""
        if self.eos_token_id is None:
            return ()
        return (self.eos_token_id,) if isinstance(self.eos_token_id, int) else tuple(self.eos_token_id)

    @property
    def forced_eos_ids(self) -> tuple[int, ...]:
        """The forced eos ids as a tuple (empty without any)."""
        ids = self.forced_eos_token_id
        return () if ids is None else (ids,) if isinstance(ids, int) else tuple(ids)

    @property
    def stops(self) -> tuple[str, ...]:
        """The stop strings as a tuple (empty without any)."""
        if self.stop_strings is None:
            return ()
        return (self.stop_strings,) if isinstance(self.stop_strings, str) else tuple(self.stop_strings)

    @property
    def fill_id(self) -> int | None:
        """What finished rows are filled with: `pad_token_id`, else the first eos id."""
        return self.pad_token_id if self.pad_token_id is not None else next(iter(self.eos_ids), None)


def shown(value: Any) -> Any:
    """A value as the user wrote it: the lists we keep as tuples shown as lists."""
    return list(value) if isinstance(value, tuple) else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(c: GenerationConfig) -> None:
    """Raise a ConfigError naming the first option with a bad value and what was expected."""
    def need(ok: bool, option: str, expected: str) -> None:
        if not ok:
            raise ConfigError(f"generation option {option}={shown(getattr(c, option))!r}: expected {expected}")

    need(_is_int(c.max_new_tokens) and c.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1")
    need(_is_int(c.min_new_tokens) and c.min_new_tokens >= 0, "min_new_tokens", "an integer >= 0")
    need(c.min_new_tokens <= c.max_new_tokens, "min_new_tokens", f"at most max_new_tokens ({c.max_new_tokens})")
    need(isinstance(c.do_sample, bool), "do_sample", "true or false")
    need(_is_int(c.num_beams) and c.num_beams >= 1, "num_beams", "an integer >= 1")
    need(_is_number(c.length_penalty), "length_penalty", "a number")
    need(isinstance(c.early_stopping, bool) or c.early_stopping == "never", "early_stopping", 'true, false or "never"')
    need(_is_int(c.no_repeat_ngram_size) and c.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", "an integer >= 0")
    need(_is_int(c.num_return_sequences) and c.num_return_sequences >= 1, "num_return_sequences", "an integer >= 1")
    need(_is_number(c.temperature) and c.temperature > 0, "temperature",
         "a number > 0 (for the most likely token, use do_sample=false)")
    need(c.top_k is None or _is_int(c.top_k) and c.top_k >= 1, "top_k", "null (off) or an integer >= 1")
    need(_is_number(c.top_p) and 0 < c.top_p <= 1, "top_p", "a number in (0, 1] (1 = off)")
    need(_is_number(c.repetition_penalty) and c.repetition_penalty > 0, "repetition_penalty", "a number > 0 (1 = off)")
    for option in ("eos_token_id", "forced_eos_token_id"):
        ids = getattr(c, option)
        need(ids is None or _is_int(ids) and ids >= 0
             or isinstance(ids, tuple) and len(ids) > 0 and all(_is_int(i) and i >= 0 for i in ids),
             option, "null, a token id >= 0 or a non-empty list of them")
    for option in ("pad_token_id", "decoder_start_token_id", "forced_bos_token_id"):
        need(getattr(c, option) is None or _is_int(getattr(c, option)) and getattr(c, option) >= 0, option,
             "null or a token id >= 0")
    need(c.stop_strings is None or isinstance(c.stop_strings, str) and c.stop_strings != ""
         or isinstance(c.stop_strings, tuple) and len(c.stop_strings) > 0
         and all(isinstance(s, str) and s != "" for s in c.stop_strings),
         "stop_strings", "null, a non-empty string or a non-empty list of them")
    need(c.seed is None or _is_int(c.seed), "seed", "null or an integer")
    need(isinstance(c.use_cache, bool), "use_cache", "true or false")
    # consistency: how many sequences each strategy can return, and options the strategy would ignore
    if c.num_beams > 1:
        need(c.num_return_sequences <= c.num_beams, "num_return_sequences",
             f"at most num_beams ({c.num_beams}): beam search returns its best finished hypotheses")
    else:
        need(c.do_sample or c.num_return_sequences == 1, "num_return_sequences",
             "1 for greedy decoding (it would repeat one sequence); set do_sample or num_beams")
        need(c.length_penalty == 1.0, "length_penalty", "1.0 without beam search (num_beams > 1)")
        need(c.early_stopping is False, "early_stopping", "false without beam search (num_beams > 1)")
    if not c.do_sample:
        for option, off in (("temperature", 1.0), ("top_k", None), ("top_p", 1.0), ("seed", None)):
            need(getattr(c, option) == off, option, f"{off!r} without sampling (do_sample=true)")
    if c.min_new_tokens > 0:
        need(c.eos_token_id is not None, "min_new_tokens", "0 without eos_token_id (it forbids the eos ids)")
    if c.stop_strings is not None:
        need(c.fill_id is not None, "pad_token_id", "a token id with stop_strings (finished rows are filled with it)")


# What `generation_defaults` reads from a model config, with HF's names.
_MODEL_DEFAULTS = ("decoder_start_token_id", "eos_token_id", "pad_token_id", "forced_bos_token_id",
                   "forced_eos_token_id")


def generation_defaults(model_config: Any) -> dict[str, Any]:
    """The special-token options a model's config implies, as HF's generate takes them from it:
    `decoder_start_token_id` (an encoder-decoder config, one with that attribute: its value, else
    its `bos_token_id`, HF's fallback), `eos_token_id`, `pad_token_id`, `forced_bos_token_id`,
    `forced_eos_token_id`; the ones the config lacks or holds as None are left out.

        config = GenerationConfig(max_new_tokens=64, num_beams=4, **generation_defaults(model.config))
    """
    out = {name: getattr(model_config, name, None) for name in _MODEL_DEFAULTS}
    if hasattr(model_config, "decoder_start_token_id") and out["decoder_start_token_id"] is None:
        out["decoder_start_token_id"] = getattr(model_config, "bos_token_id", None)
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in out.items() if v is not None}
