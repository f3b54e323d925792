"""Text generation over a KV cache, for decoder-only LMs and encoder-decoders.

    from lit_tasks import zoo
    from lit_tasks.generation import GenerationConfig, generate, generation_defaults

    lm = zoo.from_pretrained("path/to/gpt2").eval()
    out = generate(lm, input_ids, attention_mask, GenerationConfig(max_new_tokens=32, num_beams=4,
                   eos_token_id=50256, pad_token_id=50256))      # (B, P + n): prompts + new tokens

    bart = zoo.from_pretrained("path/to/bart").eval()             # a seq2seq_lm head: encode + decode
    out = generate(bart, source_ids, source_mask, GenerationConfig(max_new_tokens=64, num_beams=4,
                   **generation_defaults(bart.config)))           # (B, 1 + n): start token + new tokens

An encoder-decoder (anything with `encode` and `decode`, the zoo's contract) is recognised by
those methods: input_ids/attention_mask are then its sources, the encoder runs once, and the
decoder starts from `decoder_start_token_id` (or `decoder_input_ids=`). Special-token options
are never read from the model implicitly: `generation_defaults(model.config)` gives them.

Public API: `generate`, `GenerationConfig`, `generation_defaults`, `truncate_left`, and for
plugging in other models `Decoder` (the step interface), `CausalLM`, `EncoderDecoder`,
`as_decoder`.

Files: config.py (GenerationConfig, generation_defaults), processors.py (score rules, each equal
to a `transformers` logits processor), stopping.py (eos, length, stop strings), decoder.py (the
Decoder interface, its decoder-only and encoder-decoder forms, and the step feeder), search.py
(greedy / sampling and beam search), generate.py (`generate`, `truncate_left`). The semantics are
HF generate's; tests/generation compares them token for token (GPT-2, T5, BART, mBART).
"""

from __future__ import annotations

from lit_tasks.generation.config import GenerationConfig, generation_defaults
from lit_tasks.generation.decoder import CausalLM, Decoder, EncoderDecoder, as_decoder
from lit_tasks.generation.generate import generate, truncate_left

__all__ = ["GenerationConfig", "generate", "generation_defaults", "truncate_left", "Decoder", "CausalLM",
           "EncoderDecoder", "as_decoder"]
