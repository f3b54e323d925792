"""`zoo.from_pretrained(folder)` serves every family and head: a folder saved by `transformers`
for each of them comes back as our model with the same outputs (the README's zoo example)."""

from __future__ import annotations

import pytest
import torch

from lit_tasks import zoo

transformers = pytest.importorskip("transformers")

IMAGE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
             patch_size=8)
CONVNEXT = dict(num_stages=2, depths=[1, 1], hidden_sizes=[8, 16], patch_size=4)
RESNET = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], layer_type="bottleneck")
DETR = dict(use_timm_backbone=False, use_pretrained_backbone=False, d_model=16, encoder_layers=1, decoder_layers=2,
            encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=24, num_queries=5,
            backbone_config={"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
                             "layer_type": "basic", "out_features": ["stage2"]})
BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40)
WAV2VEC2 = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=[8, 8],
                conv_kernel=[10, 3], conv_stride=[5, 2], conv_bias=True, num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, num_codevector_groups=2, num_codevectors_per_group=6,
                codevector_dim=8, proj_codevector_dim=8, vocab_size=10, classifier_proj_size=6)
GPT2 = dict(vocab_size=99, n_positions=40, n_embd=32, n_layer=2, n_head=4, bos_token_id=98, eos_token_id=98,
            pad_token_id=0)

BART = dict(vocab_size=99, max_position_embeddings=40, d_model=32, encoder_layers=2, decoder_layers=1,
            encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=48,
            scale_embedding=True)
T5 = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=4,
          relative_attention_num_buckets=8, relative_attention_max_distance=12, decoder_start_token_id=0)

pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
ids = torch.randint(5, 99, (2, 9), generator=torch.Generator().manual_seed(1))
mask = torch.ones(2, 9, dtype=torch.long)
mask[1, 6:] = 0
audio = torch.randn(2, 800, generator=torch.Generator().manual_seed(2))
audio_mask = torch.ones(2, 800, dtype=torch.long)
audio_mask[1, 600:] = 0


def image_out(hf, ours):
    if hasattr(hf, "classifier"):
        return hf(pixel_values=pixels).logits, ours(pixels)
    if isinstance(hf, transformers.ConvNextBackbone):
        return torch.cat([m.flatten() for m in hf(pixels).feature_maps]), torch.cat(
            [m.flatten() for m in ours.forward_features(pixels)])
    return hf(pixel_values=pixels).last_hidden_state, ours(pixels).last_hidden_state


def detr_out(hf, ours):
    if isinstance(hf, transformers.DetrModel):
        return hf(pixel_values=pixels).last_hidden_state, ours(pixels).last_hidden_state
    theirs, got = hf(pixel_values=pixels), ours(pixels)
    return torch.cat([theirs.logits, theirs.pred_boxes], -1), torch.cat([got.logits, got.pred_boxes], -1)


def bert_out(hf, ours):
    theirs, got = hf(input_ids=ids, attention_mask=mask), ours(ids, mask)
    if isinstance(hf, transformers.BertForQuestionAnswering):
        return torch.stack([theirs.start_logits, theirs.end_logits]), torch.stack(list(got))
    if isinstance(hf, transformers.BertForPreTraining):
        return theirs.prediction_logits, got[0]
    if isinstance(hf, transformers.BertModel):
        return theirs.last_hidden_state, got.last_hidden_state
    return theirs.logits, got


def gpt2_out(hf, ours):
    padded = ids.masked_fill(mask == 0, 0)  # HF's classifier finds the last token by pad_token_id, ours by the mask
    theirs, got = hf(input_ids=padded, attention_mask=mask), ours(padded, mask)
    if isinstance(hf, transformers.GPT2Model):
        return theirs.last_hidden_state, got.last_hidden_state
    return theirs.logits, got


def bart_out(hf, ours):  # BART, mBART and T5: the teacher-forced decoder over padded sources
    decoder_ids = ids[:, :5]
    theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    got = ours(ids, mask, decoder_ids)
    return theirs.logits if hasattr(theirs, "logits") else theirs.last_hidden_state, got


def wav2vec2_out(hf, ours):
    if isinstance(hf, transformers.Wav2Vec2ForPreTraining):
        return hf(audio, attention_mask=audio_mask).projected_states, ours(audio, audio_mask).projected_states
    theirs, got = hf(audio, attention_mask=audio_mask), ours(audio, audio_mask)
    if isinstance(hf, transformers.Wav2Vec2Model):
        return theirs.last_hidden_state, got.last_hidden_state
    return theirs.logits, got


CASES = {  # HF class: (config class, config, outputs to compare)
    "ViTModel": ("ViTConfig", IMAGE, image_out),
    "ViTForImageClassification": ("ViTConfig", {**IMAGE, "num_labels": 3}, image_out),
    "ConvNextModel": ("ConvNextConfig", CONVNEXT, image_out),
    "ConvNextForImageClassification": ("ConvNextConfig", {**CONVNEXT, "num_labels": 3}, image_out),
    "ConvNextBackbone": ("ConvNextConfig", {**CONVNEXT, "out_features": ["stage1", "stage2"]}, image_out),
    "ResNetModel": ("ResNetConfig", RESNET, image_out),
    "ResNetForImageClassification": ("ResNetConfig", {**RESNET, "num_labels": 3}, image_out),
    "DetrModel": ("DetrConfig", DETR, detr_out),
    "DetrForObjectDetection": ("DetrConfig", {**DETR, "num_labels": 3}, detr_out),
    "BertModel": ("BertConfig", BERT, bert_out),
    "BertForSequenceClassification": ("BertConfig", {**BERT, "num_labels": 3}, bert_out),
    "BertForTokenClassification": ("BertConfig", {**BERT, "num_labels": 5}, bert_out),
    "BertForQuestionAnswering": ("BertConfig", BERT, bert_out),
    "BertForPreTraining": ("BertConfig", BERT, bert_out),
    "Wav2Vec2Model": ("Wav2Vec2Config", WAV2VEC2, wav2vec2_out),
    "Wav2Vec2ForCTC": ("Wav2Vec2Config", WAV2VEC2, wav2vec2_out),
    "Wav2Vec2ForSequenceClassification": ("Wav2Vec2Config", {**WAV2VEC2, "num_labels": 4}, wav2vec2_out),
    "Wav2Vec2ForPreTraining": ("Wav2Vec2Config", WAV2VEC2, wav2vec2_out),
    "GPT2Model": ("GPT2Config", GPT2, gpt2_out),
    "GPT2LMHeadModel": ("GPT2Config", GPT2, gpt2_out),
    "GPT2ForSequenceClassification": ("GPT2Config", {**GPT2, "num_labels": 3}, gpt2_out),
    "BartModel": ("BartConfig", BART, bart_out),
    "BartForConditionalGeneration": ("BartConfig", BART, bart_out),
    "MBartModel": ("MBartConfig", BART, bart_out),
    "MBartForConditionalGeneration": ("MBartConfig", BART, bart_out),
    "T5Model": ("T5Config", T5, bart_out),
    "T5ForConditionalGeneration": ("T5Config", {**T5, "feed_forward_proj": "gated-gelu"}, bart_out),
}


@pytest.mark.parametrize("architecture", sorted(CASES))
def test_from_pretrained_gives_the_same_outputs(architecture, tmp_path):
    config_class, config, outputs = CASES[architecture]
    torch.manual_seed(0)
    hf = getattr(transformers, architecture)(getattr(transformers, config_class)(**config)).eval()
    with torch.no_grad():
        for p in hf.parameters():  # random values everywhere: a weight loaded wrong shows
            p.normal_(0, 0.2 if p.ndim > 1 else 0.3)
    hf.save_pretrained(tmp_path)
    ours = zoo.from_pretrained(tmp_path).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        expected, got = outputs(hf, ours)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
