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
transformers and torch are the machine's."""
import json, sys

from reference_util import Peak, timeit


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


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) >= 5 and sys.argv[1] == "combine" and len(sys.argv) % 2 == 1:
        combine(sys.argv[2], *sys.argv[3:])
    else:
        sys.exit(__doc__)
