"""The original Florence-2 remote code (modeling_florence2.py of the first Florence-2 releases) run
with Debian's torch alone: transformers, timm and einops cannot run on this machine, but the modeling
file is mostly plain torch. load() execs its sections from a local copy (never committed:
LOUPE_FLORENCE2_REMOTE, default .ref/florence2_remote/modeling_florence2.py; e.g. `fetch`
kijai/ComfyUI-Florence2, `git show HEAD:modeling_florence2.py`) with small stand-ins for what it
imports, written here from their documented behaviour:
  - timm's DropPath (the identity at inference) and trunc_normal_;
  - einops' rearrange for the two patterns the DaViT code uses;
  - transformers' PreTrainedModel base class (config kept, post_init does nothing: no weight init,
    no tying; get_input_embeddings from the base model), the output records, the activation table, the attention-mask helpers (an all-ones
    padding mask and the causal mask of a decoder), the docstring decorators and the logger;
  - with generation=True, GenerationMixin.generate: greedy decoding as transformers' generate() runs
    it for an encoder-decoder model given inputs_embeds (encoder once, then _sample: the decoder with
    its key/value cache, min_new_tokens / forced BOS / forced EOS processors, EOS and max-length
    stopping, a streamer called with the decoder start ids, then with every new token).

Used by tests/fixtures/gen/florence2_original_reference.py (the parity fixture) and by
bench/florence2_reference.py run-cpu (the CPU benchmark's reference side)."""
import dataclasses, json, math, os, types, typing
from collections import OrderedDict

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def source_path():
    return os.environ.get("LOUPE_FLORENCE2_REMOTE", os.path.join(ROOT, ".ref", "florence2_remote", "modeling_florence2.py"))


def rearrange(x, pattern, **dims):  # the two patterns the DaViT code uses
    if pattern == "b (h w) c -> b c h w":
        return x.reshape(x.shape[0], dims["h"], dims["w"], x.shape[-1]).permute(0, 3, 1, 2)
    if pattern == "b c h w -> b (h w) c":
        return x.flatten(2).transpose(1, 2)
    raise NotImplementedError(pattern)


class PreTrainedModel(nn.Module):  # stands in for transformers' base class
    def __init__(self, config):
        super().__init__()
        self.config = config

    def post_init(self):
        pass

    def get_input_embeddings(self):  # the base model's (base_model_prefix), as transformers does
        base = getattr(self, getattr(self, "base_model_prefix", ""), self)
        if base is self:
            raise NotImplementedError(type(self).__name__ + ".get_input_embeddings")
        return base.get_input_embeddings()


class Output(dict):  # transformers' ModelOutput records
    def __init__(self, **kw):
        super().__init__(**kw)
        self.__dict__.update(kw)

    def __getitem__(self, k):
        return list(self.values())[k] if isinstance(k, int) else super().__getitem__(k)

    def to_tuple(self):
        return tuple(v for v in self.values() if v is not None)


def padding_mask(mask, dtype, tgt_len=None):  # [B, S] -> additive [B, 1, T, S]
    b, s = mask.shape
    t = tgt_len if tgt_len is not None else s
    inv = 1.0 - mask[:, None, None, :].expand(b, 1, t, s).to(dtype)
    return inv.masked_fill(inv.to(torch.bool), torch.finfo(dtype).min)


def causal_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length, sliding_window=None):
    b, t = input_shape
    dtype = inputs_embeds.dtype
    m = torch.full((t, t + past_key_values_length), torch.finfo(dtype).min)
    m = torch.triu(m, diagonal=1 + past_key_values_length)
    m = m[None, None].expand(b, 1, t, t + past_key_values_length)
    if attention_mask is not None:
        m = m.masked_fill(padding_mask(attention_mask, dtype, t).to(torch.bool), torch.finfo(dtype).min)
    return m


class Log:
    def __getattr__(self, n):
        return lambda *a, **k: None


ident = lambda *a, **k: (lambda f: f)


class GenerationMixin:
    """Greedy generate() of an encoder-decoder model from inputs_embeds, as transformers runs it
    (GenerationMixin.generate -> _sample): the generation settings are the arguments (the config's
    beam and n-gram settings are not read: greedy, no n-gram rule), with the config's
    decoder_start_token_id, eos_token_id, pad_token_id, forced_bos_token_id and forced_eos_token_id."""

    @torch.no_grad()
    def generate(self, input_ids=None, inputs_embeds=None, attention_mask=None, max_new_tokens=20, min_new_tokens=0,
                 do_sample=False, num_beams=1, streamer=None, **unused):
        assert input_ids is None and inputs_embeds is not None, "inputs_embeds only (Florence-2's generate)"
        assert not do_sample and num_beams == 1, "greedy decoding only"
        c = self.config
        b = inputs_embeds.shape[0]
        if attention_mask is None:  # _prepare_attention_mask_for_generation: embeddings -> all ones
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        encoder_outputs = self.get_encoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask, return_dict=True)
        ids = torch.full((b, 1), c.decoder_start_token_id, dtype=torch.long, device=inputs_embeds.device)
        if streamer is not None:
            streamer.put(ids.cpu())
        max_length = max_new_tokens + ids.shape[1]
        eos = getattr(c, "eos_token_id", None)
        pad = getattr(c, "pad_token_id", None)
        forced_bos, forced_eos = getattr(c, "forced_bos_token_id", None), getattr(c, "forced_eos_token_id", None)
        unfinished = torch.ones(b, dtype=torch.long, device=ids.device)
        past = None
        while True:
            inputs = self.prepare_inputs_for_generation(ids, past_key_values=past, attention_mask=attention_mask,
                                                        use_cache=True, encoder_outputs=encoder_outputs)
            out = self(**inputs, return_dict=True)
            scores = out.logits[:, -1, :].clone().float()
            cur = ids.shape[1]
            # MinNewTokensLengthLogitsProcessor, ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor
            if eos is not None and cur - 1 < min_new_tokens:
                scores[:, eos] = -float("inf")
            if forced_bos is not None and cur == 1:
                scores[:, :] = -float("inf")
                scores[:, forced_bos] = 0
            if forced_eos is not None and cur == max_length - 1:
                scores[:, :] = -float("inf")
                scores[:, forced_eos] = 0
            nxt = scores.argmax(-1)
            if eos is not None:
                nxt = nxt * unfinished + pad * (1 - unfinished)
            ids = torch.cat([ids, nxt[:, None]], 1)
            if streamer is not None:
                streamer.put(nxt.cpu())
            past = out.past_key_values
            if eos is not None:
                unfinished = unfinished & (nxt != eos).long()
            if ids.shape[1] >= max_length or unfinished.max() == 0:
                break
        if streamer is not None and hasattr(streamer, "end"):
            streamer.end()
        return ids


def load(src_path=None, model=False, generation=False):
    """The remote code's vision (DaViT, position embeddings, Florence2VisionModelWithProjection) and
    language-model (BART) sections exec'd in one namespace, returned as a dict; with model=True also
    Florence2ForConditionalGeneration (vision tower + projection + language model, its generate());
    with generation=True the language model gets GenerationMixin.generate above (else no generate)."""
    lines = open(src_path or source_path()).read().split("\n")

    def section(start, end=None):
        a = next(i for i, l in enumerate(lines) if l.startswith(start))
        b = len(lines) if end is None else next(i for i in range(a + 1, len(lines)) if lines[i].startswith(end))
        return "\n".join(lines[a:b])

    ns = dict(torch=torch, nn=nn, F=F, math=math, OrderedDict=OrderedDict, rearrange=rearrange,
              checkpoint=torch.utils.checkpoint, DropPath=lambda p: nn.Identity(), trunc_normal_=nn.init.trunc_normal_,
              Florence2PreTrainedModel=PreTrainedModel, Optional=typing.Optional, List=typing.List, Tuple=typing.Tuple,
              Union=typing.Union, dataclass=dataclasses.dataclass,
              is_flash_attn_2_available=lambda: False, Florence2VisionConfig=object)
    exec(section("class LearnedAbsolutePositionEmbedding2D", "def _get_unpad_data"), ns)
    exec(section("class Florence2VisionModelWithProjection", "@add_start_docstrings"), ns)
    ns.update(ACT2FN={"gelu": nn.GELU()}, PreTrainedModel=PreTrainedModel,
              GenerationMixin=GenerationMixin if generation else object,
              BaseModelOutput=Output, BaseModelOutputWithPastAndCrossAttentions=Output, Seq2SeqLMOutput=Output,
              Seq2SeqModelOutput=Output, _prepare_4d_attention_mask=padding_mask,
              _prepare_4d_attention_mask_for_sdpa=padding_mask, _prepare_4d_causal_attention_mask=causal_mask,
              _prepare_4d_causal_attention_mask_for_sdpa=causal_mask, logger=Log(), add_start_docstrings=ident,
              add_start_docstrings_to_model_forward=ident, replace_return_docstrings=ident,
              is_flash_attn_greater_or_equal_2_10=lambda: False, Florence2LanguageConfig=object,
              CrossEntropyLoss=nn.CrossEntropyLoss)
    exec(section("def shift_tokens_right", "@dataclass"), ns)
    if model:
        ns.update(Florence2Seq2SeqLMOutput=Output, FLORENCE2_INPUTS_DOCSTRING="", _CONFIG_FOR_DOC="Florence2Config",
                  Florence2Config=object)
        exec(section("class Florence2ForConditionalGeneration"), ns)
    return ns


# The config attributes the remote code reads that its configuration classes default (the values of
# configuration_florence2.py at inference: no dropout, no checkpointing, eager attention).
VISION_DEFAULTS = dict(drop_path_rate=0.0, enable_checkpoint=False, window_size=12,
                       image_feature_source=["spatial_avg_pool", "temporal_avg_pool"])
TEXT_DEFAULTS = dict(encoder_layerdrop=0.0, decoder_layerdrop=0.0, dropout=0.0, attention_dropout=0.0,
                     activation_dropout=0.0, init_std=0.02, scale_embedding=False, use_cache=True,
                     _attn_implementation="eager", output_attentions=False, output_hidden_states=False,
                     use_return_dict=True, tie_word_embeddings=True, is_encoder_decoder=True)


def vision_config(vc):
    """config.json's vision_config (original layout) -> the attributes DaViT.from_config reads."""
    return types.SimpleNamespace(**{**VISION_DEFAULTS, **vc, "model_type": "davit", "drop_path_rate": 0.0})


def text_config(tc):
    """config.json's text_config -> the attributes the BART code reads (dropout off)."""
    return types.SimpleNamespace(**{**TEXT_DEFAULTS, **tc, "dropout": 0.0})


def model_config(cfg):
    """A whole original config.json -> the config Florence2ForConditionalGeneration reads."""
    t = text_config(cfg["text_config"])
    return types.SimpleNamespace(vision_config=vision_config(cfg["vision_config"]), text_config=t,
                                 vocab_size=t.vocab_size, pad_token_id=t.pad_token_id, _attn_implementation="eager")


def tie(lm):
    """The language model's word embeddings tied as the original ties them (post_init does not here)."""
    lm.model.encoder.embed_tokens.weight = lm.model.shared.weight
    lm.model.decoder.embed_tokens.weight = lm.model.shared.weight
    lm.lm_head.weight = lm.model.shared.weight


def save_safetensors(path, tensors):  # safetensors, written by hand (float32 only)
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little")); f.write(h); [f.write(b) for b in blobs]
