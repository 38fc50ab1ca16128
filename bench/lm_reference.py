#!/usr/bin/env python3
"""The transformers side of the CPU generation benchmarks of PaliGemma (issue 15) and BLIP-2 (issue 16),
and the combined JSON. bench/lm_compare.sh runs the whole comparison.

  lm_reference.py make paligemma|blip2 WORK_DIR
      A random model of the published sizes, made once by transformers (seed 0, transformers' own
      initialisation), saved as a transformers folder that both stacks load:
        paligemma: WORK_DIR/paligemma-3b-224/: google/paligemma-3b-pt-224's config.json (SigLIP So400m/14
          at 224, Gemma-2B, vocabulary 257216, <image> = 257152), weights as 3 safetensors shards
          + model.safetensors.index.json (the published layout: "language_model.model.*", lm_head
          tied and not stored), preprocessor_config.json, and tokenizer.json: the committed tiny
          tokenizer tests/fixtures/paligemma/tiny-pg-tokenizer.json padded to the model's 257216 ids
          (its <image> moved to 257152, the other new ids unreachable fillers), so that Loupe's
          PaliGemma family accepts the folder.
        blip2: WORK_DIR/blip2-opt-2.7b/: Salesforce/blip2-opt-2.7b's sizes (EVA ViT-g 39 layers at
          224, Q-Former 12 layers with 32 queries, OPT-2.7b with vocabulary 50304, <image> = 50265;
          the sizes of loupe-bench-blip2 --size opt-2.7b), weights as safetensors shards.
      and the inputs both stacks run: WORK_DIR/<model>-inputs.safetensors: pixel_values [B, 3, 224,
      224] fp32 (seeded random values in the processors' output range) and input_ids [B, L] int64:
        paligemma (B 8): 256 x <image>, <bos>, the tiny tokenizer's ids of "caption en\\n" (what
          PaliGemmaProcessor lays out; loupe-bench-paligemma checks the folder's tokenizer gives them)
        blip2 (B 1): 32 x <image>, </s> (2), 10 ids (100 + 97 k): a "Question: ... Answer:" sized prompt
  lm_reference.py run paligemma|blip2 WORK_DIR OUT.json [--dtype fp32|bf16] [--tokens 16]
                  [--batches 1,8] [--runs 3,2] [--threads N] [--logits FILE.safetensors]
      transformers' PaliGemmaForConditionalGeneration / Blip2ForConditionalGeneration generate()
      (greedy, max_new_tokens = min_new_tokens = tokens: EOS banned until the last token) on the
      folder's weights and the inputs' first B rows, per batch size: one warm-up generate() of 2
      tokens, then `runs` timed ones. Each timed run is clocked at every new token by a streamer
      (generate()'s own hook, called as each token is chosen), as loupe-bench-paligemma /
      loupe-bench-blip2 clock theirs with the token callback: first_token_s (the prefix: vision
      tower, projector, the prompt through the language model, the first token), per_token_ms
      ((last token - first token) / (tokens - 1): one decoding step for the whole batch),
      per_token_cpu_ms (the same in process CPU time, all threads), total_s; medians over the runs;
      peak resident set sampled every ms during the case; the new ids of every row.
      Batch 1 also times the image features alone (vision tower + projector; BLIP-2: + Q-Former).
      A batch with 0 runs is left out. --logits FILE: afterwards, untimed, batch 1's generate()
      with the logits of every step (output_logits) into FILE ("step_logits" [tokens, vocab] fp32,
      "ids" [tokens]).
  lm_reference.py combine paligemma|blip2 RESULT.json REF.json [REF.json ...] -- LOUPE.json [LOUPE.json ...]
                  [--not-run "WHAT=WHY" ...]
      both stacks side by side: per case and figure, speedup = transformers time / Loupe time
      (Loupe bf16 cases against transformers' case of the same dtype when it ran, else its fp32 one),
      peak memory, whether the generated ids are the same (same dtype only), and, where each JSON
      has its X.logits.safetensors beside it (X.json), the distance between the batch-1 step logits
      (over the steps whose inputs agree), their argmax agreement and the reference's smallest
      top-1 / top-2 margin.

Weights are written and read one tensor at a time, straight between the file and the model's
parameters: the shims' pure-Python safetensors (tests/fixtures/gen/shims/refshim.py) holds a whole
file in memory twice (24 GB for PaliGemma-3B in fp32, 30 GB for BLIP-2 OPT-2.7b), more than this
machine has; so `run` builds the model from the folder's config.json with weight initialisation
off (transformers' no_init_weights, as from_pretrained does) and fills every stored tensor.
transformers comes from its source in .ref/transformers/src; torch is Debian's 1.13:
  PYTHONPATH=.ref/transformers/src:tests/fixtures/gen/shims:bench LOUPE_REF_SHIM=tfshim /usr/bin/python3 bench/lm_reference.py ...
"""
import ctypes, importlib, json, os, platform, statistics, struct, sys, time

if os.environ.get("LOUPE_REF_SHIM"):  # Debian's torch 1.13 here: tests/fixtures/gen/shims/tfshim.py
    importlib.import_module(os.environ["LOUPE_REF_SHIM"])

from reference_util import Peak, rss_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TINY_TOKENIZER_JSON = os.path.join(ROOT, "tests", "fixtures", "paligemma", "tiny-pg-tokenizer.json")
TINY_TOKENIZER_MODEL = os.path.join(ROOT, "tests", "fixtures", "paligemma", "tiny-pg1", "tokenizer.model")

# config.json of google/paligemma-3b-pt-224 (as published, transformers 4.41)
PALIGEMMA_CONFIG = {
    "architectures": ["PaliGemmaForConditionalGeneration"], "bos_token_id": 2, "eos_token_id": 1, "hidden_size": 2048,
    "ignore_index": -100, "image_token_index": 257152, "model_type": "paligemma", "pad_token_id": 0,
    "projection_dim": 2048,
    "text_config": {"hidden_size": 2048, "intermediate_size": 16384, "model_type": "gemma", "num_attention_heads": 8,
                    "num_hidden_layers": 18, "num_image_tokens": 256, "num_key_value_heads": 1, "torch_dtype": "float32",
                    "vocab_size": 257216},
    "torch_dtype": "float32",
    "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "model_type": "siglip_vision_model",
                      "num_attention_heads": 16, "num_hidden_layers": 27, "num_image_tokens": 256, "patch_size": 14,
                      "projection_dim": 2048, "projector_hidden_act": "gelu_fast", "vision_use_head": False},
}
PALIGEMMA_PROMPT = "caption en"
# Salesforce/blip2-opt-2.7b's sizes (Blip2VisionConfig / Blip2QFormerConfig defaults; OPT-2.7b), as
# loupe-bench-blip2 --size opt-2.7b builds them
BLIP2_TEXT = {"model_type": "opt", "vocab_size": 50304, "max_position_embeddings": 2048, "eos_token_id": 50118,
              "bos_token_id": 2, "pad_token_id": 1, "word_embed_proj_dim": 2560, "hidden_size": 2560, "ffn_dim": 10240,
              "num_hidden_layers": 32, "num_attention_heads": 32, "do_layer_norm_before": True, "prefix": "</s>"}
BLIP2_IMAGE_TOKEN = 50265

MODELS = {"paligemma": "paligemma-3b-224", "blip2": "blip2-opt-2.7b"}
SHARD_BYTES = 5 * 10 ** 9  # save_pretrained's default max_shard_size ("5GB")
_DT = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "I64": "int64"}


def folder(family, work):
    return os.path.join(work, MODELS[family])


def inputs_file(family, work):
    return os.path.join(work, MODELS[family] + "-inputs.safetensors")


# --- safetensors, one tensor at a time ----------------------------------------------------------

def _st_name(t):
    import torch
    return {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}[t.dtype]


def _raw(t):
    """A tensor's bytes as a buffer, without a copy (numpy has no bf16: viewed as int16)."""
    import torch
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return memoryview(t.reshape(-1).numpy()).cast("B")


def write_safetensors(tensors, path):
    """tensors: list of (name, tensor), written in order with the {"format": "pt"} metadata."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, t in tensors:
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _st_name(t), "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, t in tensors:
            f.write(_raw(t))


def save_sharded(state, out_dir):
    """model-0000N-of-0000M.safetensors of at most SHARD_BYTES each + model.safetensors.index.json
    (tensors in state-dict order, as save_pretrained shards them)."""
    shards, size = [[]], 0
    for name, t in state:
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, t))
        size += n
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for _, t in state)}, "weight_map": {}}
    for i, part in enumerate(shards):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        write_safetensors(part, os.path.join(out_dir, fn))
        for name, _ in part:
            index["weight_map"][name] = fn
        print("wrote", fn, len(part), "tensors", flush=True)
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)


def _header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def read_safetensors(path):
    """A small file (the inputs) whole: {name: tensor}."""
    import torch
    header, base = _header(path)
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            dt = getattr(torch, _DT[info["dtype"]])
            out[name] = torch.frombuffer(bytearray(f.read(b - a)), dtype=dt).reshape(info["shape"]).clone()
    return out


def load_weights(model, model_dir):
    """Fills the model's parameters and buffers from the folder's safetensors (index or single file),
    one tensor at a time, read into the parameter's own memory. Every state-dict entry must be filled,
    directly or as a tied copy of a filled one; shapes and dtypes must agree."""
    import torch
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    sd = model.state_dict()
    filled, ptrs = set(), set()
    for fn in files:
        path = os.path.join(model_dir, fn)
        header, base = _header(path)
        with open(path, "rb", buffering=0) as f:
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if name not in sd:
                    raise KeyError(f"{path}: {name} is not a weight of {type(model).__name__}")
                t = sd[name]
                if list(t.shape) != info["shape"] or _st_name(t) != info["dtype"]:
                    raise ValueError(f"{path}: {name} is {info['dtype']} {info['shape']}, the model has {t.dtype} "
                                     f"{list(t.shape)}")
                a, b = info["data_offsets"]
                f.seek(base + a)
                view, done = _raw(t), 0
                while done < b - a:  # read() returns at most ~2 GiB at a time
                    n = f.readinto(view[done:done + (1 << 28)])
                    if not n:
                        raise IOError(f"{path}: {name} is cut short")
                    done += n
                filled.add(name)
                ptrs.add(t.data_ptr())
    missing = [k for k, t in sd.items() if k not in filled and t.data_ptr() not in ptrs]
    if missing:
        raise KeyError(f"{model_dir}: no stored value for {missing[:5]} ({len(missing)} in all)")
    return sorted(k for k in sd if k not in filled)  # tied copies


# --- the models ---------------------------------------------------------------------------------

def model_class(family):
    import transformers
    return (transformers.PaliGemmaForConditionalGeneration if family == "paligemma"
            else transformers.Blip2ForConditionalGeneration)


def config_for(family):
    from transformers import Blip2Config, PaliGemmaConfig
    if family == "paligemma":
        return PaliGemmaConfig.from_dict(json.loads(json.dumps(PALIGEMMA_CONFIG)))
    c = Blip2Config(vision_config={}, qformer_config={}, text_config=dict(BLIP2_TEXT), num_query_tokens=32,
                    image_token_index=BLIP2_IMAGE_TOKEN)
    c.architectures = ["Blip2ForConditionalGeneration"]
    return c


def padded_tokenizer_json(vocab_size, image_id):
    """The tiny PaliGemma tokenizer (tests/fixtures/paligemma/tiny-pg-tokenizer.json, 1800 ids) with
    <image> moved to image_id and the ids up to vocab_size filled with pieces no text produces."""
    j = json.load(open(TINY_TOKENIZER_JSON))
    vocab = j["model"]["vocab"]
    old = vocab.pop("<image>")
    vocab[f"<bench_unused{old}>"] = old
    used = set(vocab.values())
    for i in range(vocab_size):
        if i not in used and i != image_id:
            vocab[f"<bench_unused{i}>"] = i
    vocab["<image>"] = image_id
    for t in j["added_tokens"]:
        if t["content"] == "<image>":
            t["id"] = image_id
    assert sorted(vocab.values()) == list(range(vocab_size))
    return j


def make(family, work):
    import torch
    import transformers
    d = folder(family, work)
    if os.path.exists(os.path.join(d, "config.json")):
        print(d, "is there already")
        return
    os.makedirs(d, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    t = time.time()
    config = config_for(family)
    config._attn_implementation = "eager"
    model = model_class(family)(config).eval()
    model.tie_weights()
    print(f"{family}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters initialised in "
          f"{time.time() - t:.0f} s", flush=True)
    lm_head = model.language_model.lm_head.weight
    emb = model.language_model.get_input_embeddings().weight
    assert lm_head.data_ptr() == emb.data_ptr(), "lm_head is expected tied to the input embeddings"
    # the published layout: the tied lm_head is not stored
    state = [(k, v) for k, v in model.state_dict().items() if k != "language_model.lm_head.weight"]
    save_sharded(state, d)
    config.save_pretrained(d)
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        if family == "paligemma":
            json.dump({"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}, f, indent=2)
        else:
            json.dump({"bos_token_id": 2, "eos_token_id": 50118, "pad_token_id": 1}, f, indent=2)
    g = torch.Generator().manual_seed(1)
    if family == "paligemma":
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump({"do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
                       "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
                       "image_seq_length": 256, "image_std": [0.5, 0.5, 0.5], "processor_class": "PaliGemmaProcessor",
                       "resample": 3, "rescale_factor": 1 / 255, "size": {"height": 224, "width": 224}}, f, indent=2)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump(padded_tokenizer_json(257216, 257152), f, ensure_ascii=False)
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=TINY_TOKENIZER_MODEL)
        row = [257152] * 256 + [2] + sp.encode(PALIGEMMA_PROMPT + "\n")
        ids = torch.tensor([row] * 8, dtype=torch.int64)
        pixels = torch.rand(8, 3, 224, 224, generator=g) * 2 - 1  # SigLIP's processor output range
    else:
        row = [BLIP2_IMAGE_TOKEN] * 32 + [2] + [100 + 97 * k for k in range(10)]
        ids = torch.tensor([row], dtype=torch.int64)
        pixels = torch.randn(1, 3, 224, 224, generator=g)  # about the CLIP-normalised range
    write_safetensors([("pixel_values", pixels), ("input_ids", ids)], inputs_file(family, work))
    print(f"{family}: saved in {time.time() - t:.0f} s to {d}", flush=True)


def set_threads(n):
    """torch's intra-op pool and OpenBLAS, as Loupe's runtime sets both (core/cpu.cpp apply_threads)."""
    import torch
    torch.set_num_threads(n)
    for lib in ("libopenblas.so.0", "libblas.so.3"):
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
            return lib
        except (OSError, AttributeError):
            pass
    return None


def physical_cores():
    ids, cur = set(), {}
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        k = k.strip()
        if k in ("physical id", "core id"):
            cur[k] = v.strip()
        if not line.strip():
            if cur:
                ids.add((cur.get("physical id"), cur.get("core id")))
            cur = {}
    return len(ids) or os.cpu_count() or 1


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"


class TokenClock:
    """generate()'s streamer: put() gets the prompt first, then each new token as it is chosen."""

    def __init__(self):
        self.calls, self.wall, self.cpu = 0, [], []

    def put(self, value):
        self.calls += 1
        if self.calls > 1:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    def end(self):
        pass


def run(family, work, out, dtype="fp32", tokens=16, batches=(1,), runs=(3,), threads=0, logits=None):
    import torch
    import transformers
    from transformers.modeling_utils import no_init_weights
    threads = threads or int(os.environ.get("LOUPE_NUM_THREADS", 0)) or physical_cores()
    blas = set_threads(threads)
    d = folder(family, work)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    t = time.perf_counter()
    cls = model_class(family)
    config = cls.config_class.from_pretrained(d)
    config._attn_implementation = "eager"  # torch 1.13 has no scaled_dot_product_attention (sdpa needs >= 2.1.1)
    with no_init_weights():
        model = cls(config)
    model.tie_weights()
    tied = load_weights(model, d)
    model = model.eval().to(dt)
    load_s = time.perf_counter() - t
    lm = model.language_model
    attn = lm.model.layers[0].self_attn if family == "paligemma" else lm.model.decoder.layers[0].self_attn
    inputs = read_safetensors(inputs_file(family, work))
    name = MODELS[family]
    res = {"stack": "transformers", "machine": cpu_name(), "platform": platform.platform(),
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "python": platform.python_version()},
           "threads": torch.get_num_threads(), "openblas_threads_set_through": blas,
           "model": {"name": name, "class": cls.__name__, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                     "dtype": str(dt).replace("torch.", ""), "attention": type(attn).__name__, "weights": d,
                     "tied_not_stored": tied},
           "load_s": load_s, "new_tokens": tokens, "cases": {}}
    print(json.dumps({k: res[k] for k in ("machine", "versions", "threads", "model", "load_s")}), flush=True)
    pad, eos = (0, 1) if family == "paligemma" else (1, 50118)

    def generate(ids, px, n, clock=None, keep_logits=False):
        with torch.inference_mode():
            out = model.generate(input_ids=ids, pixel_values=px, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                 min_new_tokens=n, do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad,
                                 streamer=clock, output_logits=keep_logits, return_dict_in_generate=keep_logits)
        seq = out.sequences if keep_logits else out
        # PaliGemma returns prompt + new ids; BLIP-2 (the prompt goes in as embeddings) its BOS + new ids
        new = seq[:, ids.shape[1]:] if family == "paligemma" else seq[:, 1:]
        return (new, torch.stack(out.logits, 1)) if keep_logits else new

    def features(px):
        with torch.inference_mode():
            if family == "paligemma":
                return model.multi_modal_projector(model.vision_tower(px).last_hidden_state)
            img = model.vision_model(px, return_dict=True).last_hidden_state
            q = model.qformer(query_embeds=model.query_tokens.expand(img.shape[0], -1, -1), encoder_hidden_states=img,
                              encoder_attention_mask=torch.ones(img.shape[:-1], dtype=torch.long), return_dict=True)
            return model.language_projection(q.last_hidden_state)

    for b, n_runs in zip(batches, runs):
        ids, px = inputs["input_ids"][:b], inputs["pixel_values"][:b].to(dt)
        if ids.shape[0] < b:
            raise ValueError(f"the inputs hold {ids.shape[0]} rows, batch {b} asked")
        if n_runs < 1:
            continue
        case = f"{name}_{dtype}_bs{b}"
        per_run = []
        with Peak() as p:
            generate(ids, px, 2)  # warm-up
            for _ in range(n_runs):
                clock = TokenClock()
                t0, c0 = time.perf_counter(), time.process_time()
                new = generate(ids, px, tokens, clock)
                t1 = time.perf_counter()
                assert new.shape == (b, tokens) and len(clock.wall) == tokens, (new.shape, len(clock.wall))
                per_run.append({"first_token_s": clock.wall[0] - t0, "total_s": t1 - t0,
                                "per_token_ms": (clock.wall[-1] - clock.wall[0]) / (tokens - 1) * 1000,
                                "per_token_cpu_ms": (clock.cpu[-1] - clock.cpu[0]) / (tokens - 1) * 1000,
                                "prefix_cpu_s": clock.cpu[0] - c0})
                print(case, per_run[-1], flush=True)
            vis = []
            if b == 1:
                for _ in range(3):
                    t0 = time.perf_counter()
                    features(px)
                    vis.append(time.perf_counter() - t0)
        r = {k: statistics.median(x[k] for x in per_run) for k in per_run[0]}
        r.update({"batch": b, "new_tokens": tokens, "runs": per_run, "per_token_per_image_ms": r["per_token_ms"] / b,
                  "peak_rss_bytes": p.peak, "ids": new.tolist()})
        if vis:
            r["image_features_s"] = statistics.median(vis)
        res["cases"][case] = r
        print(case, {k: v for k, v in r.items() if k not in ("runs", "ids")}, flush=True)
    if logits:  # untimed: batch 1's logits at every step, for the distance between the stacks
        new, lg = generate(inputs["input_ids"][:1], inputs["pixel_values"][:1].to(dt), tokens, keep_logits=True)
        write_safetensors([("step_logits", lg[0].float().contiguous()), ("ids", new[0].contiguous())], logits)
        res["logits"] = {"file": logits, "ids": new[0].tolist()}
    res["process_peak_rss_bytes"] = rss_bytes(peak=True)
    if out != "-":
        json.dump(res, open(out, "w"), indent=1)


# --- both stacks side by side -------------------------------------------------------------------

def logits_path(json_path):
    return (json_path[:-5] if json_path.endswith(".json") else json_path) + ".logits.safetensors"


def logits_distance(lo_path, ref_path):
    """Batch 1's step logits of both stacks, over the steps whose inputs are the same ids (up to and
    including the first step where the chosen ids differ)."""
    a, b = read_safetensors(lo_path), read_safetensors(ref_path)
    la, lb = a["step_logits"].float(), b["step_logits"].float()
    ia, ib = a["ids"].tolist(), b["ids"].tolist()
    diff = next((i for i, (x, y) in enumerate(zip(ia, ib)) if x != y), None)
    m = min(len(la), len(lb)) if diff is None else diff + 1
    la, lb = la[:m], lb[:m]
    d = (la - lb).abs()
    top2 = lb.topk(2, -1).values
    return {"steps_compared": m, "max_abs": float(d.max()), "mean_abs": float(d.mean()),
            "reference_mean_abs": float(lb.abs().mean()), "reference_std": float(lb.std()),
            "argmax_equal_steps": int((la.argmax(-1) == lb.argmax(-1)).sum()),
            "reference_top1_top2_margin_min": float((top2[:, 0] - top2[:, 1]).min()),
            "loupe_ids": ia, "reference_ids": ib}


def combine(family, out_path, refs, loupes, not_run=None):
    ref_paths, loupe_paths = refs, loupes
    refs = [json.load(open(p)) for p in refs]
    loupes = [json.load(open(p)) for p in loupes]
    ref_cases = {c: v for r in refs for c, v in r["cases"].items()}
    figures = (("first_token_s", "s"), ("per_token_ms", "ms"), ("per_token_per_image_ms", "ms"),
               ("per_token_cpu_ms", "ms"), ("total_s", "s"), ("image_features_s", "s"))
    cases, memory, ids = {}, {}, {}
    for lo in loupes:
        for case, l in lo["cases"].items():
            dtype = case.split("_")[-2]
            same = case in ref_cases
            rc = case if same else case.replace(f"_{dtype}_", "_fp32_")
            r = ref_cases.get(rc)
            for key, unit in figures:
                a, b = (r or {}).get(key), l.get(key)
                if b is None:
                    continue
                cases[f"{case}.{key}"] = {"unit": unit, "reference": a, "reference_case": rc if r else None, "loupe": b,
                                          "speedup": round(a / b, 3) if a and b else None}
            memory[case] = {"reference": (r or {}).get("peak_rss_bytes"), "reference_case": rc if r else None,
                            "loupe": l.get("peak_rss_bytes")}
            if r:
                rows = [x == y for x, y in zip(l["ids"], r["ids"])]
                first_diff = [next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), None)
                              for x, y in zip(l["ids"], r["ids"])]
                ids[case] = {"compared_with": rc, "same_dtype": same, "rows_equal": sum(rows), "rows": len(rows),
                             "all_equal": all(rows), "first_differing_step_per_row": first_diff}
    distance = {}
    ref_logits = {r["model"]["dtype"]: logits_path(p) for r, p in zip(refs, ref_paths) if os.path.exists(logits_path(p))}
    for l, p in zip(loupes, loupe_paths):
        dt = l["model"]["dtype"]
        rdt = dt if dt in ref_logits else "float32"
        if os.path.exists(logits_path(p)) and rdt in ref_logits:
            distance[f"loupe {dt} vs transformers {rdt}"] = logits_distance(logits_path(p), ref_logits[rdt])
    ref0, lo0 = refs[0], loupes[0]
    what = {"paligemma": "PaliGemma-3B-224 sizes (google/paligemma-3b-pt-224's config.json), random weights made once "
                         "by transformers (seed 0) and loaded by both stacks from the same safetensors; prompt: 256 "
                         "image tokens, <bos>, 'caption en\\n' (262 ids); 224 x 224 random pixels per row",
            "blip2": "BLIP-2 OPT-2.7b sizes (Salesforce/blip2-opt-2.7b: EVA ViT-g 39 layers, Q-Former 12 layers, 32 "
                     "queries, OPT-2.7b), random weights made once by transformers (seed 0) and loaded by both stacks "
                     "from the same safetensors; prompt: 32 image tokens, </s>, 10 ids; one 224 x 224 random image"}[family]
    result = {
        "benchmark": f"{MODELS[family]}-generate-cpu",
        "what": what + f"; greedy, {ref0['new_tokens']} new tokens with EOS banned until the last (min_new_tokens = "
                "max_new_tokens); each run clocked at every new token (transformers: generate()'s streamer; Loupe: the "
                "token callback): first_token_s = the prefix (vision, projector, prompt through the language model, "
                "first token), per_token_ms = one decoding step of the whole batch ((last - first token) / (n - 1)), "
                "per_token_per_image_ms = that / batch; medians over the runs after a warm-up generate(); speedup = "
                "transformers time / Loupe time; peak memory: the process's resident set sampled every ms during the "
                "case (weights included)",
        "machine": {"cpu": ref0["machine"], "platform": ref0.get("platform"), "threads": ref0["threads"],
                    "loupe_cpu": lo0.get("cpu")},
        "environment": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "LOUPE_NUM_THREADS", "OMP_WAIT_POLICY")},
        "versions": {**ref0["versions"], "loupe": lo0.get("build")},
        "reference_attention": ref0["model"].get("attention"),
        "cases": cases, "peak_rss_bytes": memory, "generated_ids": ids,
        "logits_distance_bs1": distance,
        "not_run": not_run or {},
        "load_s": {"reference": {r["model"]["dtype"]: r["load_s"] for r in refs},
                   "loupe": {l["model"]["dtype"]: l.get("load_s") for l in loupes}},
        "raw": {"reference": refs, "loupe": loupes},
    }
    json.dump(result, open(out_path, "w"), indent=1)
    print(json.dumps({"cases": cases, "peak_rss_bytes": memory, "generated_ids": ids, "logits_distance_bs1": distance},
                     indent=1))


def main(argv):
    import argparse
    if len(argv) >= 3 and argv[0] == "make":
        return make(argv[1], argv[2])
    if len(argv) >= 4 and argv[0] == "run":
        ap = argparse.ArgumentParser()
        ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
        ap.add_argument("--tokens", type=int, default=16)
        ap.add_argument("--batches", default="1")
        ap.add_argument("--runs", default="3")
        ap.add_argument("--threads", type=int, default=0)
        ap.add_argument("--logits", default=None)
        a = ap.parse_args(argv[4:])
        batches = [int(x) for x in a.batches.split(",")]
        runs = [int(x) for x in a.runs.split(",")]
        runs += [runs[-1]] * (len(batches) - len(runs))
        if a.tokens < 2:
            sys.exit("--tokens must be at least 2")
        return run(argv[1], argv[2], argv[3], a.dtype, a.tokens, batches, runs, a.threads, a.logits)
    if len(argv) >= 5 and argv[0] == "combine" and "--" in argv:
        not_run = {}
        while "--not-run" in argv:  # --not-run "STACK DTYPE=why": recorded under "not_run"
            i = argv.index("--not-run")
            key, _, why = argv[i + 1].partition("=")
            not_run[key] = why
            del argv[i:i + 2]
        k = argv.index("--")
        return combine(argv[1], argv[2], argv[3:k], argv[k + 1:], not_run)
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
