#!/usr/bin/env python3
"""The diffusers side of the Stable Diffusion benchmark, on the GPU machine, and the combined JSON.

  sd_reference.py run WEIGHTS_DIR OUT.json   random SD 1.5-size UNet and VAE (the configs of
      ../shared/device/reference_baseline.py), saved as a diffusers folder in WEIGHTS_DIR so that
      loupe-bench-sd --weights WEIGHTS_DIR runs the very same weights; then diffusers' timings (fp16,
      512 x 512, UNet step with guidance, VAE decode, 30-step Euler pipeline at guidance 7.5) and
      peak device memory sampled like loupe-bench-sd does (used device memory, every millisecond).
  sd_reference.py combine-cpu WORK_DIR RESULT.json   bench/cpu_compare.sh's runs side by side: speedup
      = diffusers fp32 time / Loupe time, and each output's distance from diffusers fp32's.
  sd_reference.py combine REF.json LOUPE.json RESULT.json   both stacks side by side with a
      "speedup" (reference time / Loupe time) per case.
  sd_reference.py run WEIGHTS_DIR OUT.json --device cpu [--dtype fp32|bf16] [--threads N] [--steps 0]
      the same on the CPU (bench/cpu_compare.sh): the weights are made once and reused; peak memory is
      the process's resident set sampled every millisecond while a case runs (as loupe-bench-sd does
      on the CPU); --steps 0 leaves out the whole-image pipeline.
diffusers comes from its source on PYTHONPATH (never committed); transformers and torch are the
machine's (on this machine: Debian's torch 1.13 through tests/fixtures/gen/shims/refshim.py)."""
import importlib, json, os, sys

if os.environ.get("LOUPE_REF_SHIM"):  # Debian's torch 1.13 here: tests/fixtures/gen/shims/refshim.py
    importlib.import_module(os.environ["LOUPE_REF_SHIM"])

from reference_util import Peak, timeit, rss_bytes

def combine(ref_path, loupe_path, out_path):
    ref, lo = json.load(open(ref_path)), json.load(open(loupe_path))
    cases = {}
    for case, rk, lk, unit in (("unet_cfg2_step", "unet_cfg2_step_ms", "unet_cfg2_step_ms", "ms"),
                               ("vae_decode_512", "vae_decode_ms", "vae_decode_ms", "ms"),
                               ("pipeline_30_steps_512", "pipeline_s", "pipeline_s", "s")):
        r, l = ref.get(rk), lo.get(lk)
        cases[case] = {"unit": unit, "reference": r, "loupe": l,
                       "speedup": round(r / l, 3) if r and l else None}
    mem = {k: {"reference": ref.get(k), "loupe": lo.get(k)} for k in
           ("unet_step_peak_device_bytes", "vae_decode_peak_device_bytes", "pipeline_peak_device_bytes")}
    json.dump({"benchmark": "stable-diffusion-1.5", "machine": ref.get("machine"), "versions": ref.get("versions"),
               "loupe_build": lo.get("build"), "cases": cases, "peak_device_memory_bytes": mem,
               "reference_raw": ref, "loupe_raw": lo}, open(out_path, "w"), indent=2)
    print(json.dumps(cases, indent=2))

def combine_cpu(work, out_path):
    import platform
    import torch
    from safetensors.torch import load_file
    runs = {}
    for name in ("diffusers-fp32", "diffusers-bf16", "loupe-fp32", "loupe-bf16"):
        p = os.path.join(work, name + ".json")
        if os.path.exists(p):
            runs[name] = json.load(open(p))
    ref = runs["diffusers-fp32"]
    ref_out = torch.load(os.path.join(work, "diffusers-fp32.json.outputs.pt"))
    cases, memory, distance = {}, {}, {}
    for name, r in runs.items():
        if name == "diffusers-fp32":
            continue
        for case, key in (("unet_cfg2_step", "unet_cfg2_step_ms"), ("vae_decode_512", "vae_decode_ms"),
                          ("unet_cfg2_step_cpu_time", "unet_cfg2_step_cpu_ms"), ("vae_decode_512_cpu_time", "vae_decode_cpu_ms")):
            cases.setdefault(case, {"unit": "ms", "diffusers-fp32": ref[key]})
            cases[case][name] = r[key]
            cases[case]["speedup_" + name] = round(ref[key] / r[key], 3)
        for key in ("unet_step_peak_device_bytes", "vae_decode_peak_device_bytes", "process_peak_rss_bytes"):
            memory.setdefault(key, {"diffusers-fp32": ref.get(key)})[name] = r.get(key)
        outs = (load_file(os.path.join(work, name + ".safetensors")) if name.startswith("loupe")
                else torch.load(os.path.join(work, name + ".json.outputs.pt")))
        distance[name] = {k: {"max_abs": float((outs[k].float() - ref_out[k]).abs().max()),
                              "mean_abs": float((outs[k].float() - ref_out[k]).abs().mean()),
                              "reference_mean_abs": float(ref_out[k].abs().mean())} for k in ("unet", "vae")}
    result = {"benchmark": "stable-diffusion-1.5-cpu", "what": "512 x 512, random SD 1.5-size weights (the same for every "
              "stack), one UNet step with classifier-free guidance (batch 2) and one VAE decode; median wall time and "
              "median process CPU time (all threads; less disturbed by other programs on the machine); "
              "peak resident set sampled every ms while the case runs",
              "machine": {"cpu": ref["machine"], "threads": ref["threads"], "platform": platform.platform()},
              "environment": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "LOUPE_NUM_THREADS")},
              "versions": ref["versions"], "diffusers_attention": ref.get("attention_processor"),
              "loupe_build": runs.get("loupe-fp32", {}).get("build"),
              "cases": cases, "peak_memory_bytes": memory, "output_distance_from_diffusers_fp32": distance,
              "not_run": {"stable-diffusion.cpp": "its source arrives here without the ggml submodule it builds "
                                                  "with; not buildable on this machine"},
              "raw": runs}
    json.dump(result, open(out_path, "w"), indent=2)
    print(json.dumps({"cases": cases, "peak_memory_bytes": memory, "distance": distance}, indent=2))

def run(weights, out, device="cuda", dtype="fp16", threads=0, steps=30):
    import torch
    import diffusers
    from diffusers import UNet2DConditionModel, AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline
    dev = device
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if os.path.isdir(os.path.join(weights, "unet")):  # made by an earlier run: the same weights again
        unet = UNet2DConditionModel.from_pretrained(os.path.join(weights, "unet")).to(dev, dt).eval()
        vae = AutoencoderKL.from_pretrained(os.path.join(weights, "vae")).to(dev, dt).eval()
    else:
        unet = UNet2DConditionModel(cross_attention_dim=768).to(dev, dt).eval()
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                            sample_size=512).to(dev, dt).eval()
        unet.save_pretrained(os.path.join(weights, "unet"))
        vae.save_pretrained(os.path.join(weights, "vae"))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    cuda = dev.startswith("cuda")
    res = {"stack": "diffusers", "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                               "diffusers": diffusers.__version__},
           "machine": torch.cuda.get_device_name(0) if cuda else cpu_name(), "device": dev, "dtype": dtype,
           "threads": torch.get_num_threads(),
           "attention_processor": type(unet.attn_processors[next(iter(unet.attn_processors))]).__name__}
    g = torch.Generator("cpu").manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g).to(dev, dt)
    pe, ne = rnd(1, 77, 768), rnd(1, 77, 768)
    lat, emb, z = rnd(2, 4, 64, 64), rnd(2, 77, 768), rnd(1, 4, 64, 64)
    tt = torch.tensor([500., 500.], device=dev)
    warm, n_unet, n_vae = (3, 20, 5) if cuda else (1, 3, 2)
    with torch.inference_mode():
        cpu = {}
        with Peak() as p:
            res["unet_cfg2_step_ms"] = 1000 * timeit(lambda: unet(lat, tt, encoder_hidden_states=emb), warm, n_unet, cpu)
        res["unet_step_peak_device_bytes"], res["unet_cfg2_step_cpu_ms"] = p.peak, 1000 * cpu["s"]
        with Peak() as p:
            res["vae_decode_ms"] = 1000 * timeit(lambda: vae.decode(z), min(warm, 2), n_vae, cpu)
        res["vae_decode_peak_device_bytes"], res["vae_decode_cpu_ms"] = p.peak, 1000 * cpu["s"]
        if steps:
            with Peak() as p:
                res["pipeline_s"] = timeit(lambda: pipe(prompt_embeds=pe, negative_prompt_embeds=ne, num_inference_steps=steps,
                                                        guidance_scale=7.5, height=512, width=512, output_type="pt"), 1, 3)
            res["pipeline_peak_device_bytes"] = p.peak
            res["pipeline_steps"] = steps
        # the outputs themselves, for the comparison of the two stacks' images (bench/cpu_compare.sh)
        torch.save({"unet": unet(lat, tt, encoder_hidden_states=emb).sample.float().cpu(),
                    "vae": vae.decode(z).sample.float().cpu()}, out + ".outputs.pt")
    if cuda:
        res["max_memory_reserved_bytes"] = torch.cuda.max_memory_reserved()
    res["process_peak_rss_bytes"] = rss_bytes(peak=True)
    json.dump(res, open(out, "w"), indent=2)
    print(json.dumps(res, indent=2))

def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"

if __name__ == "__main__":
    if sys.argv[1] == "run":
        import argparse
        ap = argparse.ArgumentParser()
        ap.add_argument("weights"); ap.add_argument("out")
        ap.add_argument("--device", default="cuda"); ap.add_argument("--dtype", default=None)
        ap.add_argument("--threads", type=int, default=0); ap.add_argument("--steps", type=int, default=30)
        a = ap.parse_args(sys.argv[2:])
        run(a.weights, a.out, a.device, a.dtype or ("fp16" if a.device.startswith("cuda") else "fp32"), a.threads, a.steps)
    elif sys.argv[1] == "combine": combine(*sys.argv[2:5])
    elif sys.argv[1] == "combine-cpu": combine_cpu(*sys.argv[2:4])
    else: sys.exit(__doc__)
