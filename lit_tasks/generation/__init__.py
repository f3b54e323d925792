"""Text generation over a KV cache, for decoder-only LMs and (through `Decoder`) encoder-decoders.

    from lit_tasks import zoo
    from lit_tasks.generation import GenerationConfig, generate

    lm = zoo.from_pretrained("path/to/gpt2").eval()
    out = generate(lm, input_ids, attention_mask, GenerationConfig(max_new_tokens=32, num_beams=4,
                   eos_token_id=50256, pad_token_id=50256))      # (B, P + n): prompts + new tokens

Files: config.py (GenerationConfig), processors.py (score rules, each equal to a `transformers`
logits processor), stopping.py (eos, length, stop strings), decoder.py (the Decoder interface
and the step feeder), search.py (greedy / sampling and beam search), generate.py (`generate`,
`truncate_left`). The semantics are HF generate's; tests/generation compares them token for token.
"""

from __future__ import annotations

from lit_tasks.generation.config import GenerationConfig
from lit_tasks.generation.decoder import CausalLM, Decoder, as_decoder
from lit_tasks.generation.generate import generate, truncate_left

__all__ = ["GenerationConfig", "generate", "truncate_left", "Decoder", "CausalLM", "as_decoder"]
