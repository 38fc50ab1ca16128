#!/usr/bin/env python3
"""The transformers side of the Florence-2 benchmark, on the GPU machine, and the combined JSON.

  florence2_reference.py run SIZE WEIGHTS_DIR OUT.json   SIZE base|large: a random Florence-2 of the
      configs of ../shared/device/reference_baseline.py (transformers' native
      Florence2ForConditionalGeneration, fp16), saved with save_pretrained in WEIGHTS_DIR so that
      loupe-bench-florence2 --weights WEIGHTS_DIR runs the very same weights; then generate() timed
      as reference_baseline.py times it (64 new tokens with min_new_tokens 64, greedy, batch 1 and 8,
      median of 5 after a warm-up) and peak device memory sampled like loupe-bench-florence2 does
      (used device memory, every millisecond); also beam search with 3 beams and no-repeat 3-grams
      at batch 1 (the SDK's default for one image).
  florence2_reference.py combine RESULT.json REF.json LOUPE.json [REF.json LOUPE.json ...]
      both stacks side by side with a "speedup" (reference time / Loupe time) per case.
transformers and torch are the machine's.

The CPU side by side (issue 11: the original Florence-2 modules on this machine's Debian torch,
bench/florence2_original.py; bench/florence2_cpu_compare.sh runs it all):
  florence2_reference.py make-cpu SIZE DIR   SIZE base|large (or tiny): the original remote code's
      Florence2ForConditionalGeneration at the published sizes (the configs of loupe-bench-florence2),
      random weights (seeded: normal, std 0.02; layer norms 1 + normal 0.02), saved in the original
      layout (pytorch_model.bin, config.json with the original vision keys) with the tiny fixtures'
      tokenizer and generation config and a 768 x 768 image processor, and DIR/inputs.safetensors
      (pixel_values [1, 3, 768, 768], prompt_ids [1, 8]: <s>, 6 ids, </s>) so that
      loupe-bench-florence2 --weights DIR --inputs DIR/inputs.safetensors runs the very same model
      on the very same input.
  florence2_reference.py run-cpu DIR OUT.json [--threads N] [--runs R] [--tokens T] [--outputs F]
      the original modules from DIR, fp32, on N threads (default: LOUPE_NUM_THREADS, else the physical
      cores, as Loupe chooses): after a warm-up caption of 2 tokens, R timed captions of T new tokens
      (greedy, batch 1, min_new_tokens T: exactly T tokens) through the original generate() (its
      _encode_image, merge and language_model.generate; generate is the stand-in transcription of
      transformers' greedy generate), each clocked at every new token by a streamer; then R runs of
      the vision tower + projection alone (_encode_image) and R of the encoder alone (prompt
      embedding, merge, BART encoder). Medians; peak resident set sampled every ms; the ids of the
      last caption. --outputs F: image_features, encoder_states and decoder_logits (the decoder
      teacher-forced on the start token and the caption's ids but the last) in F.safetensors, as
      loupe-bench-florence2 --outputs writes them.
  florence2_reference.py combine-cpu RESULT.json REF.json [REF.json ...] LOUPE.json [LOUPE.json ...]
      one size's runs side by side (the reference with one or more OpenBLAS kernel sets, e.g.
      OPENBLAS_CORETYPE=Haswell and SkylakeX: per part the fastest counts; "speedup" = that reference
      time / Loupe time per part), ids
      compared, and where X.outputs.safetensors lies beside a run's X.json, the distance of Loupe's
      outputs from the reference's; merged into RESULT.json (the other sizes already there are kept;
      an earlier session of the same size keeps its times and speedups under "earlier_sessions",
      as this machine's timings drift by 10-20 % between sessions)."""
import json, os, platform, sys, time

from reference_util import Peak, rss_bytes, timeit


def run(size, weights, out):
    import torch
    import transformers
    from transformers import Florence2Config, Florence2ForConditionalGeneration
    dev, dt = "cuda", torch.float16
    if size == "large":
        vc = dict(embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64], projection_dim=1024)
        tc = dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16, decoder_attention_heads=16,
                  encoder_ffn_dim=4096, decoder_ffn_dim=4096, vocab_size=51290, max_position_embeddings=1024)
    else:
        vc = dict(projection_dim=768)
        tc = dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
                  encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=51290, max_position_embeddings=1024)
    torch.manual_seed(0)
    cfg = Florence2Config(vision_config=vc, text_config=tc)
    with torch.device(dev):
        m = Florence2ForConditionalGeneration(cfg).to(dt).eval()
    m.save_pretrained(weights)

    res = {"stack": "transformers", "machine": torch.cuda.get_device_name(0),
           "versions": {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__},
           "model": {"size": size, "params_M": round(sum(p.numel() for p in m.parameters()) / 1e6, 1), "dtype": "float16"},
           "cases": {}}
    n_img = (768 // 32) ** 2 + 1  # image placeholders in input_ids (NOTES.md)
    for bs in (1, 8):
        px = torch.randn(bs, 3, 768, 768, device=dev, dtype=dt)
        ids = torch.cat([torch.full((bs, n_img), cfg.image_token_id, device=dev),
                         torch.randint(4, 50000, (bs, 8), device=dev)], 1)

        def gen(nt):
            with torch.inference_mode():
                return m.generate(input_ids=ids, pixel_values=px, max_new_tokens=nt, min_new_tokens=nt, do_sample=False,
                                  num_beams=1)
        with Peak() as p:
            t64, t1 = timeit(lambda: gen(64), 1, 5), timeit(lambda: gen(1), 1, 5)
        per_token = (t64 - t1) / 63 * 1000
        res["cases"][f"florence2_{size}_bs{bs}"] = {"gen64_s": t64, "gen1_s": t1, "per_token_ms": per_token,
                                                     "per_token_per_image_ms": per_token / bs, "peak_device_bytes": p.peak}
        print(f"florence2-{size} bs{bs}", res["cases"][f"florence2_{size}_bs{bs}"], flush=True)
    # the SDK's default for one image: beam search (3 beams, no-repeat 3-grams), batch 1
    px = torch.randn(1, 3, 768, 768, device=dev, dtype=dt)
    ids = torch.cat([torch.full((1, n_img), cfg.image_token_id, device=dev), torch.randint(4, 50000, (1, 8), device=dev)], 1)

    def beam(nt):
        with torch.inference_mode():
            return m.generate(input_ids=ids, pixel_values=px, max_new_tokens=nt, min_new_tokens=nt, do_sample=False,
                              num_beams=3, no_repeat_ngram_size=3)
    with Peak() as p:
        t64, t1 = timeit(lambda: beam(64), 1, 5), timeit(lambda: beam(1), 1, 5)
    res["cases"][f"florence2_{size}_beam3_bs1"] = {"gen64_s": t64, "gen1_s": t1, "per_token_ms": (t64 - t1) / 63 * 1000,
                                                    "peak_device_bytes": p.peak}
    print(f"florence2-{size} beam3 bs1", res["cases"][f"florence2_{size}_beam3_bs1"], flush=True)
    json.dump(res, open(out, "w"), indent=2)


def combine(out_path, *pairs):
    cases, mem, raw = {}, {}, []
    ref0 = None
    for ref_path, loupe_path in zip(pairs[0::2], pairs[1::2]):
        ref, lo = json.load(open(ref_path)), json.load(open(loupe_path))
        ref0 = ref0 or ref
        raw.append({"reference": ref, "loupe": lo})
        for name, r in ref["cases"].items():
            # Loupe's eager decoding, and its CUDA-graph decoding where it ran ("<case>_graphs")
            for lname in (name, name + "_graphs"):
                l = lo.get("cases", {}).get(lname)
                if l is None and lname != name:
                    continue
                l = l or {}
                for key, unit in (("gen64_s", "s"), ("per_token_ms", "ms")):
                    a, b = r.get(key), l.get(key)
                    cases[f"{lname}.{key}"] = {"unit": unit, "reference": a, "loupe": b,
                                               "speedup": round(a / b, 3) if a and b else None}
                mem[lname] = {"reference": r.get("peak_device_bytes"), "loupe": l.get("peak_device_bytes")}
    json.dump({"benchmark": "florence2-generate-64-tokens", "machine": ref0.get("machine") if ref0 else None,
               "versions": ref0.get("versions") if ref0 else None,
               "loupe_build": raw[0]["loupe"].get("build") if raw else None, "cases": cases,
               "peak_device_memory_bytes": mem, "raw": raw}, open(out_path, "w"), indent=2)
    print(json.dumps(cases, indent=2))


# ------------------------------------------------------------------ CPU: the original remote code

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
TINY = os.path.join(ROOT, "tests", "fixtures", "florence2", "tiny-original")


def original_config(size):
    """config.json in the original layout at the sizes of loupe-bench-florence2's make_config (the
    published Florence-2-base / -large shapes; vocabulary 51289, no image token, as the originals)."""
    v = dict(depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1],
             patch_prenorm=[False, True, True, True], dim_embed=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
             num_groups=[4, 8, 16, 32], window_size=12, projection_dim=768)
    t = dict(vocab_size=51289, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
             decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024)
    size_px = 768
    if size == "large":
        v.update(dim_embed=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64],
                 projection_dim=1024)
        t.update(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                 decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096)
    elif size == "tiny":  # loupe-bench-florence2 --size tiny's shapes: a quick check of the scripts
        v.update(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1], patch_prenorm=[False, True],
                 dim_embed=[16, 32], num_heads=[2, 4], num_groups=[2, 4], window_size=4, projection_dim=32)
        t.update(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=64)
        size_px = 64
    elif size != "base":
        sys.exit("size: base, large or tiny")
    vision = dict(model_type="davit", **v, enable_checkpoint=False,
                  image_pos_embed={"type": "learned_abs_2d", "max_pos_embeddings": 50},
                  visual_temporal_embedding={"type": "COSINE", "max_temporal_embeddings": 100},
                  image_feature_source=["spatial_avg_pool", "temporal_avg_pool"])
    text = dict(model_type="florence2_language", **t, activation_function="gelu", scale_embedding=False,
                pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    return {"architectures": ["Florence2ForConditionalGeneration"], "model_type": "florence2",
            "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config"},
            "vision_config": vision, "text_config": text, "projection_dim": v["projection_dim"]}, size_px


def original_model(cfg, generation=False):
    import florence2_original as fo
    ns = fo.load(model=True, generation=generation)
    return ns["Florence2ForConditionalGeneration"](fo.model_config(cfg)).eval(), fo


def make_cpu(size, out_dir):
    import shutil
    import torch
    cfg, px = original_config(size)
    torch.manual_seed(0)
    m, fo = original_model(cfg)
    fo.tie(m.language_model)
    norms = {id(mod.weight) for mod in m.modules() if isinstance(mod, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, p in m.named_parameters():  # tied weights appear once
            p.normal_(1.0 if id(p) in norms else 0.0, 0.02)
    os.makedirs(out_dir, exist_ok=True)
    torch.save(m.state_dict(), os.path.join(out_dir, "pytorch_model.bin"))
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=1)
    pre = json.load(open(os.path.join(TINY, "preprocessor_config.json")))
    pre["size"] = {"height": px, "width": px}
    pre["image_seq_length"] = (px // 32) ** 2 + 1 if size != "tiny" else pre["image_seq_length"]
    json.dump(pre, open(os.path.join(out_dir, "preprocessor_config.json"), "w"), indent=1)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(TINY, f), os.path.join(out_dir, f))
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, px, px, generator=g)
    prompt = torch.tensor([[0] + [4 + 97 * k for k in range(1, 7)] + [2]])
    fo.save_safetensors(os.path.join(out_dir, "inputs.safetensors"),
                        {"pixel_values": pixels, "prompt_ids": prompt.float()})
    n = sum(p.numel() for p in m.parameters())
    print(f"wrote {out_dir}: florence2-{size} original layout, {n / 1e6:.1f} M parameters", flush=True)


def read_safetensors_f32(path):
    import struct
    import numpy as np
    import torch
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=np.float32).copy())
            .reshape(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def physical_cores():
    cores = set()
    cur = {}
    for line in open("/proc/cpuinfo"):
        if ":" in line:
            k, v = (x.strip() for x in line.split(":", 1))
            cur[k] = v
        elif cur:
            cores.add((cur.get("physical id"), cur.get("core id", cur.get("processor"))))
            cur = {}
    if cur:
        cores.add((cur.get("physical id"), cur.get("core id", cur.get("processor"))))
    return max(1, min(len(cores), len(os.sched_getaffinity(0))))


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def openblas_info():
    import ctypes
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = lib.openblas_get_config.restype = ctypes.c_char_p
        return {"core": lib.openblas_get_corename().decode(), "config": lib.openblas_get_config().decode()}
    except OSError:
        return None


class Clock:
    """A generate() streamer: the wall and CPU time at each new token (the first put() is the
    decoder start ids, not a new token)."""

    def __init__(self):
        self.first, self.wall, self.cpu = True, [], []

    def put(self, ids):
        if self.first:
            self.first = False
            return
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def end(self):
        pass


def median(v):
    v = sorted(v)
    n = len(v)
    return 0.0 if not n else v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def run_cpu(weights, out, threads=0, runs=5, tokens=64, outputs=None):
    import torch
    threads = threads or int(os.environ.get("LOUPE_NUM_THREADS") or 0) or physical_cores()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    cfg = json.load(open(os.path.join(weights, "config.json")))
    m, fo = original_model(cfg, generation=True)
    sd = torch.load(os.path.join(weights, "pytorch_model.bin"), map_location="cpu")
    res = m.load_state_dict(sd, strict=False)
    del sd
    assert not res.missing_keys and not res.unexpected_keys, (res.missing_keys, res.unexpected_keys)
    fo.tie(m.language_model)
    load_s = time.perf_counter() - t0
    inp = read_safetensors_f32(os.path.join(weights, "inputs.safetensors"))
    px, prompt = inp["pixel_values"][:1], inp["prompt_ids"][:1].long()
    size = {768: "base", 1024: "large"}.get(cfg["text_config"]["d_model"], "d%d" % cfg["text_config"]["d_model"])
    name = f"florence2_{size}_fp32_bs1"

    def caption(n, clock=None):
        with torch.no_grad():
            return m.generate(input_ids=prompt, pixel_values=px, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              num_beams=1, streamer=clock)

    def encoder():
        with torch.no_grad():
            emb, mask = m._merge_input_ids_with_image_features(feats, m.get_input_embeddings()(prompt))
            return m.language_model.get_encoder()(inputs_embeds=emb, attention_mask=mask, return_dict=True)

    with Peak() as peak:
        caption(2)  # warm-up
        all_runs, ids = [], None
        for r in range(runs):
            clock = Clock()
            c0, w0 = time.process_time(), time.perf_counter()
            ids = caption(tokens, clock)
            w1 = time.perf_counter()
            assert len(clock.wall) == tokens, (len(clock.wall), tokens)
            all_runs.append({"first_token_s": clock.wall[0] - w0, "total_s": w1 - w0,
                             "per_token_ms": (clock.wall[-1] - clock.wall[0]) / (tokens - 1) * 1000,
                             "per_token_cpu_ms": (clock.cpu[-1] - clock.cpu[0]) / (tokens - 1) * 1000,
                             "prefix_cpu_s": clock.cpu[0] - c0})
            print(name, "run", r, all_runs[-1], flush=True)
        with torch.no_grad():
            vis_cpu = {}
            vision_s = timeit(lambda: m._encode_image(px), 0, runs, vis_cpu)
            feats = m._encode_image(px)
            enc_cpu = {}
            encoder_s = timeit(encoder, 0, runs, enc_cpu)
    if outputs:
        with torch.no_grad():
            enc = encoder().last_hidden_state
            enc_out = fo.Output(last_hidden_state=enc, hidden_states=None, attentions=None)
            logits = m.language_model(attention_mask=torch.ones(enc.shape[:2], dtype=torch.long),
                                      decoder_input_ids=ids[:, :-1], encoder_outputs=enc_out, use_cache=False,
                                      return_dict=True).logits
        fo.save_safetensors(outputs, {"image_features": feats, "encoder_states": enc, "decoder_logits": logits})
    case = {k: median([r[k] for r in all_runs]) for k in all_runs[0]}
    case.update(vision_s=vision_s, vision_cpu_s=vis_cpu["s"], encoder_s=encoder_s, encoder_cpu_s=enc_cpu["s"],
                per_token_per_image_ms=case["per_token_ms"], batch=1, new_tokens=tokens, runs=all_runs,
                ids=ids[:, 1:].tolist(), peak_rss_bytes=peak.peak)
    result = {"stack": "original remote code (modeling_florence2.py) on torch, bench/florence2_original.py stand-ins",
              "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "physical_cores": physical_cores(),
                          "platform": platform.platform()},
              "versions": {"torch": torch.__version__, "python": platform.python_version(),
                           "remote_code": os.path.relpath(fo.source_path(), ROOT)},
              "blas": openblas_info(), "threads": torch.get_num_threads(),
              "environment": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "LOUPE_NUM_THREADS", "OMP_NUM_THREADS",
                                                             "OMP_WAIT_POLICY")},
              "attention": cfg["text_config"].get("_attn_implementation", "eager"),
              "model": {"size": size, "params_M": sum(p.numel() for p in m.parameters()) / 1e6, "dtype": "float32",
                        "device": "cpu", "weights": weights},
              "load_s": load_s, "new_tokens": tokens, "cases": {name: case},
              "process_peak_rss_bytes": rss_bytes(True)}
    json.dump(result, open(out, "w"), indent=1)
    print(json.dumps({k: v for k, v in case.items() if k not in ("runs", "ids")}, indent=1))


def combine_cpu(out_path, *paths):
    """paths: run-cpu JSONs (the reference, possibly with several OpenBLAS kernel sets) and
    loupe-bench-florence2 JSONs of one size, told apart by their "stack"."""
    runs = [(p, json.load(open(p))) for p in paths]
    refs = [(p, d) for p, d in runs if d["stack"] != "loupe"]
    loupes = [(p, d) for p, d in runs if d["stack"] == "loupe"]
    ref_path, ref = refs[0]
    size = ref["model"]["size"]
    parts = (("caption", "total_s", "s"), ("vision", "vision_s", "s"), ("encoder", "encoder_s", "s"),
             ("per_token", "per_token_ms", "ms"), ("first_token", "first_token_s", "s"),
             ("caption_cpu_time_per_token", "per_token_cpu_ms", "ms"))
    case = lambda d: next(iter(d["cases"].values()))
    ref_tag = lambda d: "reference-fp32-openblas-" + ((d.get("blas") or {}).get("core") or "unknown").lower()
    entry = {"what": f"Florence-2-{size} shapes, random weights (the same file for both stacks), one 768 x 768 image, "
                     f"an 8-token prompt, a greedy caption of {ref['new_tokens']} new tokens (min_new_tokens = max_new_tokens) "
                     "at batch 1; medians of the runs; caption = whole generate() (vision tower + projection, encoder, "
                     "decoding); vision and encoder timed alone; per_token = (last token - first token) / (tokens - 1). "
                     "reference-fp32 is, per part, the fastest of the reference runs (OpenBLAS kernel sets), and every "
                     "speedup is against it",
             "params_M": ref["model"]["params_M"], "reference": {"stack": ref["stack"], "dtype": "float32"},
             "cases": {}, "peak_rss_bytes": {}, "process_peak_rss_bytes": {}, "ids_equal_to_reference": {}, "raw": {}}
    for p, d in refs:
        t = ref_tag(d)
        entry["raw"][t] = d
        entry["peak_rss_bytes"][t] = case(d)["peak_rss_bytes"]
        entry["process_peak_rss_bytes"][t] = d["process_peak_rss_bytes"]
    best = {}
    for part, key, unit in parts:
        c = entry["cases"][part] = {"unit": unit}
        for p, d in refs:
            c[ref_tag(d)] = case(d)[key]
        best[key], c["reference-fp32_from"] = min((case(d)[key], ref_tag(d)) for p, d in refs)
        c["reference-fp32"] = best[key]
    r = case(ref)
    for lp, lo in loupes:
        l = case(lo)
        tag = "loupe-" + {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(lo["model"]["dtype"], lo["model"]["dtype"])
        entry["raw"][tag] = lo
        for part, key, unit in parts:
            c = entry["cases"][part]
            c[tag] = l.get(key)
            c["speedup_" + tag] = round(best[key] / l[key], 3) if best.get(key) and l.get(key) else None
        entry["peak_rss_bytes"][tag] = l.get("peak_rss_bytes")
        entry["process_peak_rss_bytes"][tag] = lo.get("process_peak_rss_bytes")
        same = l.get("ids") == r["ids"]
        first_diff = None
        if not same and l.get("ids"):
            a, b = r["ids"][0], l["ids"][0]
            first_diff = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        entry["ids_equal_to_reference"][tag] = {"equal": same, "first_difference_at": first_diff,
                                                "distinct_ids": len(set(r["ids"][0]))}
        ro, lo_out = ref_path[:-5] + ".outputs.safetensors", lp[:-5] + ".outputs.safetensors"
        if os.path.exists(ro) and os.path.exists(lo_out):
            a, b = read_safetensors_f32(ro), read_safetensors_f32(lo_out)
            d = {}
            for k in a:
                if k in b and a[k].shape == b[k].shape:
                    d[k] = {"max_abs": (a[k] - b[k]).abs().max().item(), "mean_abs": (a[k] - b[k]).abs().mean().item(),
                            "reference_mean_abs": a[k].abs().mean().item()}
            if "decoder_logits" in a:  # how close greedy decoding came to a tie (reference logits)
                top2 = a["decoder_logits"][0].topk(2, -1).values
                d["reference_min_top1_top2_margin"] = (top2[:, 0] - top2[:, 1]).min().item()
            entry.setdefault("output_distance_from_reference", {})[tag] = d
    for p, d in refs[1:]:  # the other reference runs give the same ids
        entry["ids_equal_to_reference"][ref_tag(d)] = {"equal": case(d)["ids"] == r["ids"]}
    stamp = lambda path: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(path)))
    entry["session"] = {"reference_finished": [stamp(p) for p, _ in refs], "loupe_finished": [stamp(p) for p, _ in loupes]}
    entry["goal"] = "caption (end to end) at least 2x faster than the reference per image"
    entry["goal_met"] = {k[len("speedup_"):]: v >= 2 for k, v in entry["cases"]["caption"].items()
                         if k.startswith("speedup_") and v is not None}
    try:
        result = json.load(open(out_path))
    except (OSError, ValueError):
        result = {}
    result.update({"benchmark": "florence2-cpu-caption", "machine": ref["machine"], "threads": ref["threads"],
                   "environment": ref["environment"],
                   "blas": {ref_tag(d): d["blas"] for _, d in refs},
                   "versions": dict(ref["versions"], loupe=entry["raw"].get("loupe-fp32", {}).get("build"))})
    old = result.setdefault("sizes", {}).get(size)
    if old:
        entry["earlier_sessions"] = old.pop("earlier_sessions", []) + [
            {k: old.get(k) for k in ("session", "cases", "ids_equal_to_reference", "peak_rss_bytes")}]
    result["sizes"][size] = entry
    json.dump(result, open(out_path, "w"), indent=1)
    print(json.dumps({size: {"cases": entry["cases"], "ids": entry["ids_equal_to_reference"]}}, indent=1))

if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) >= 5 and sys.argv[1] == "combine" and len(sys.argv) % 2 == 1:
        combine(sys.argv[2], *sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "make-cpu":
        make_cpu(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "run-cpu":
        import argparse
        a = argparse.ArgumentParser(prog="florence2_reference.py run-cpu")
        a.add_argument("weights"); a.add_argument("out")
        a.add_argument("--threads", type=int, default=0); a.add_argument("--runs", type=int, default=5)
        a.add_argument("--tokens", type=int, default=64); a.add_argument("--outputs")
        o = a.parse_args(sys.argv[2:])
        run_cpu(o.weights, o.out, o.threads, o.runs, o.tokens, o.outputs)
    elif len(sys.argv) >= 4 and sys.argv[1] == "combine-cpu":
        combine_cpu(sys.argv[2], *sys.argv[3:])
    else:
        sys.exit(__doc__)
