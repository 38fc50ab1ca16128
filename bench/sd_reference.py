#!/usr/bin/env python3
"""The diffusers side of the Stable Diffusion benchmark, on the GPU machine, and the combined JSON.

  sd_reference.py make WEIGHTS_DIR [--size sd15|sdxl]   random UNet and VAE of that size (seeded),
      saved as a diffusers folder in WEIGHTS_DIR so that loupe-bench-sd --weights WEIGHTS_DIR runs the
      very same weights; sd15: the configs of ../shared/device/reference_baseline.py; sdxl:
      stabilityai/stable-diffusion-xl-base-1.0's unet/ and vae/ config.json. Nothing if already there.
  sd_reference.py run WEIGHTS_DIR OUT.json   the weights (made first when missing), then diffusers'
      timings (fp16, 512 x 512, UNet step with guidance, VAE decode, 30-step Euler pipeline at
      guidance 7.5) and peak device memory sampled like loupe-bench-sd does (used device memory,
      every millisecond).
  sd_reference.py run WEIGHTS_DIR OUT.json --device cpu [--dtype fp32|bf16] [--threads N] [--steps 0]
      [--size sd15|sdxl] [--resolution PX] [--cases unet,vae]
      the same on the CPU (bench/cpu_compare.sh): peak memory is the process's resident set sampled
      every millisecond while a case runs (as loupe-bench-sd does on the CPU); --steps 0 leaves out
      the whole-image pipeline (sdxl: always left out); --cases runs one case alone, loading only its
      model; the inputs are drawn as loupe-bench-sd draws them; the outputs go to OUT.json.outputs.pt.
  sd_reference.py combine-cpu WORK_DIR RESULT.json [--size S]   bench/cpu_compare.sh's runs side by
      side: per case, at the largest resolution every stack ran, speedup = diffusers fp32 time /
      Loupe time, peak memory, and each output's distance from diffusers fp32's; the runs that failed
      (out of memory, out of time) under not_run.
  sd_reference.py combine REF.json LOUPE.json RESULT.json   both stacks side by side with a
      "speedup" (reference time / Loupe time) per case.
diffusers comes from its source on PYTHONPATH (never committed); transformers and torch are the
machine's (on this machine: Debian's torch 1.13 through tests/fixtures/gen/shims/refshim.py).
Weights are written and read one tensor at a time (the shim's pure-Python safetensors holds a whole
file in memory twice: 20 GB for SDXL's fp32 UNet), so the process holds the model once."""
import glob, importlib, json, os, re, struct, sys

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

# The two sizes: diffusers' UNet2DConditionModel / AutoencoderKL arguments; loupe-bench-sd --size has
# the same numbers. sdxl: stabilityai/stable-diffusion-xl-base-1.0's unet/ and vae/ config.json.
_SD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=512)
SIZES = {
    "sd15": dict(unet=dict(cross_attention_dim=768), vae=_SD_VAE, resolution=512),
    "sdxl": dict(unet=dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                           transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                           cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
                           projection_class_embeddings_input_dim=2816, use_linear_projection=True,
                           down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                           up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
                 vae=dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
                 resolution=1024),
}
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def _st_dtypes():
    import torch
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def save_model(model, folder):
    """config.json and one safetensors file, written one tensor at a time (state_dict order, no metadata)."""
    import torch
    names = {v: k for k, v in _st_dtypes().items()}
    os.makedirs(folder, exist_ok=True)
    model.save_config(folder)
    sd = model.state_dict()
    header, off = {}, 0
    for k, t in sd.items():
        n = t.numel() * t.element_size()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(folder, WEIGHTS_FILE), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in sd.values():
            if t.numel():
                f.write(memoryview(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()))


def load_model(cls, folder):
    """cls from folder's config.json, its tensors read one at a time into the parameters (strict)."""
    import torch
    model = cls.from_config(cls.load_config(folder))
    sd, dts = model.state_dict(), _st_dtypes()
    with open(os.path.join(folder, WEIGHTS_FILE), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        if set(header) != set(sd):
            sys.exit(f"{folder}: checkpoint and model differ: missing {sorted(set(sd) - set(header))[:5]}, "
                     f"unexpected {sorted(set(header) - set(sd))[:5]}")
        for k, info in header.items():
            a, b = info["data_offsets"]
            f.seek(8 + n + a)
            buf = torch.empty(b - a, dtype=torch.uint8)
            if b > a:
                f.readinto(memoryview(buf.numpy()))
            sd[k].copy_(buf.view(dts[info["dtype"]]).reshape(info["shape"]))
    return model


def make(weights, size="sd15"):
    """The random weights of that size (torch.manual_seed(0), the UNet then the VAE), once."""
    if all(os.path.exists(os.path.join(weights, m, WEIGHTS_FILE)) for m in ("unet", "vae")):
        return
    import torch
    from diffusers import UNet2DConditionModel, AutoencoderKL
    torch.manual_seed(0)
    tmp = weights.rstrip("/") + ".partial"
    with torch.no_grad():
        unet = UNet2DConditionModel(**SIZES[size]["unet"])
        save_model(unet, os.path.join(tmp, "unet"))
        del unet
        save_model(AutoencoderKL(**SIZES[size]["vae"]), os.path.join(tmp, "vae"))
    os.replace(tmp, weights)


_RUN = re.compile(r"^(?P<stack>[a-z]+-[a-z0-9]+)\.(?P<case>unet|vae)\.r(?P<px>\d+)\.(?P<ext>json|failed)$")
_STACKS = ("diffusers-fp32", "loupe-fp32", "loupe-bf16", "diffusers-bf16")
_REQUIRED = ("diffusers-fp32", "loupe-fp32", "loupe-bf16")  # a resolution counts where these all ran
_KEYS = {"unet": ("unet_cfg2_step_ms", "unet_cfg2_step_cpu_ms", "unet_step_peak_device_bytes"),
         "vae": ("vae_decode_ms", "vae_decode_cpu_ms", "vae_decode_peak_device_bytes")}


def combine_cpu(work, out_path, size="sd15"):
    """WORK holds one run per stack, case and resolution (bench/cpu_compare.sh): STACK.CASE.rPX.json
    with its outputs (.json.outputs.pt from diffusers, .safetensors from Loupe), or STACK.CASE.rPX.failed
    (JSON: exit status and reason) for a run that did not finish."""
    import platform
    import torch
    from safetensors.torch import load_file
    runs, failed = {}, {}
    for p in sorted(os.listdir(work)):
        m = _RUN.match(p)
        if m:
            key = (m["stack"], m["case"], int(m["px"]))
            (runs if m["ext"] == "json" else failed)[key] = json.load(open(os.path.join(work, p)))
    cases, memory, rss, distance, resolution, not_run, raw = {}, {}, {}, {}, {}, {}, {}
    binaries = set()  # which loupe-bench-sd the compared runs ran (bench/cpu_compare.sh's .binary files)
    for (stack, case, px), f in sorted(failed.items()):
        not_run[f"{stack} {case} at {px} x {px}"] = f
    for case in ("unet", "vae"):
        pxs = sorted({k[2] for k in runs if k[1] == case}, reverse=True)
        ok = [px for px in pxs if all((s, case, px) in runs for s in _REQUIRED)]
        for px in pxs:
            for s in _STACKS:
                if (s, case, px) in runs:
                    raw[f"{s}.{case}.r{px}"] = runs[(s, case, px)]
        if not ok:
            continue
        px = resolution[case] = ok[0]
        ms, cpu_ms, peak = _KEYS[case]
        name = "unet_cfg2_step" if case == "unet" else f"vae_decode_{px}"
        ref = runs[("diffusers-fp32", case, px)]
        ref_out = torch.load(os.path.join(work, f"diffusers-fp32.{case}.r{px}.json.outputs.pt"))[case]
        for cname, key in ((name, ms), (name + "_cpu_time", cpu_ms)):
            cases[cname] = {"unit": "ms", "resolution": px, "diffusers-fp32": ref[key]}
        memory[peak] = {"resolution": px, "diffusers-fp32": ref[peak]}
        rss[case] = {"resolution": px, "diffusers-fp32": ref["process_peak_rss_bytes"]}
        for s in _STACKS[1:]:
            r = runs.get((s, case, px))
            if r is None:
                continue
            for cname, key in ((name, ms), (name + "_cpu_time", cpu_ms)):
                cases[cname][s] = r[key]
                cases[cname]["speedup_" + s] = round(ref[key] / r[key], 3)
            memory[peak][s] = r[peak]
            if os.path.exists(os.path.join(work, f"{s}.{case}.r{px}.binary")):
                binaries.add(open(os.path.join(work, f"{s}.{case}.r{px}.binary")).read().strip())
            rss[case][s] = r["process_peak_rss_bytes"]
            base = os.path.join(work, f"{s}.{case}.r{px}")
            out = (load_file(base + ".safetensors") if s.startswith("loupe")
                   else torch.load(base + ".json.outputs.pt"))[case].float()
            distance.setdefault(s, {})[case] = {"resolution": px, "max_abs": float((out - ref_out).abs().max()),
                                                "mean_abs": float((out - ref_out).abs().mean()),
                                                "reference_mean_abs": float(ref_out.abs().mean())}
    any_ref = next((r for (s, _, _), r in runs.items() if s == "diffusers-fp32"), {})
    any_loupe = next((r for (s, _, _), r in runs.items() if s.startswith("loupe")), {})
    what = {"sd15": "random SD 1.5-size weights", "sdxl": "random SDXL base 1.0-size weights (UNet 2.6 B parameters)"}
    extra = (" with the pooled text embedding (1280) and the size/crop time ids, encoder states 77 x 2048"
             if size == "sdxl" else "")
    result = {"benchmark": f"stable-diffusion-{'1.5' if size == 'sd15' else size}-cpu",
              "what": f"{what.get(size, size)} (the same for every stack), one UNet step with classifier-free "
                      f"guidance (batch 2){extra}, and one VAE decode (batch 1); each stack, case and resolution in "
                      "its own process, loading only the model the case needs; median wall time and median process "
                      "CPU time (all threads; less disturbed by other programs on the machine) after one warm-up "
                      "run (the run whose output is compared); peak resident set sampled every ms while the case "
                      "runs (weights included); process_peak_rss_bytes: the process's peak, loading included. "
                      "Each case at the largest resolution tried that every stack (diffusers fp32, Loupe fp32 "
                      "and bf16) finished; the others under not_run",
              "resolution": resolution,
              "machine": {"cpu": any_ref.get("machine"), "threads": any_ref.get("threads"),
                          "platform": platform.platform(), "isa": cpu_flags(),
                          "memory_bytes": mem_total()},
              "environment": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "LOUPE_NUM_THREADS")},
              "versions": any_ref.get("versions"), "diffusers_attention": any_ref.get("attention_processor"),
              "loupe_build": any_loupe.get("build"), "loupe_binary": [json.loads(b) for b in sorted(binaries)],
              "loupe_model": any_loupe.get("model"),
              "cases": cases, "peak_memory_bytes": memory, "process_peak_rss_bytes": rss,
              "output_distance_from_diffusers_fp32": distance,
              "not_run": dict(not_run, **{"stable-diffusion.cpp": "its source arrives here without the ggml submodule "
                                                                  "it builds with; not buildable on this machine"}),
              "raw": raw}
    json.dump(result, open(out_path, "w"), indent=2)
    print(json.dumps({"resolution": resolution, "cases": cases, "peak_memory_bytes": memory,
                      "distance": distance, "not_run": not_run}, indent=2))


def run(weights, out, device="cuda", dtype="fp16", threads=0, steps=30, size="sd15", resolution=0, cases="unet,vae"):
    import torch
    import diffusers
    from diffusers import UNet2DConditionModel, AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline
    dev = device
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    if threads:
        torch.set_num_threads(threads)
    make(weights, size)
    run_unet, run_vae = "unet" in cases, "vae" in cases
    # the inputs' sizes from the UNet's config.json (read for a VAE-only run too: the same draws)
    ucfg = UNet2DConditionModel.load_config(os.path.join(weights, "unet"))
    xl = ucfg.get("addition_embed_type") == "text_time"
    ctx = ucfg["cross_attention_dim"] if isinstance(ucfg["cross_attention_dim"], int) else ucfg["cross_attention_dim"][0]
    pooled_dim = ucfg["projection_class_embeddings_input_dim"] - 6 * ucfg["addition_time_embed_dim"] if xl else 0
    px = resolution or SIZES[size]["resolution"]
    if steps and (xl or not (run_unet and run_vae)):
        sys.exit("the whole-image pipeline (--steps) runs for sd15 with both models: pass --steps 0")
    unet = load_model(UNet2DConditionModel, os.path.join(weights, "unet")).to(dev, dt).eval() if run_unet else None
    vae = load_model(AutoencoderKL, os.path.join(weights, "vae")).to(dev, dt).eval() if run_vae else None

    cuda = dev.startswith("cuda")
    model = unet if run_unet else vae
    res = {"stack": "diffusers", "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                               "diffusers": diffusers.__version__},
           "machine": torch.cuda.get_device_name(0) if cuda else cpu_name(), "device": dev, "dtype": dtype,
           "threads": torch.get_num_threads(), "size": size, "resolution": px, "cases": cases,
           "attention_processor": type(model.attn_processors[next(iter(model.attn_processors))]).__name__}
    # drawn from one CPU generator, seed 0, in loupe-bench-sd's order
    g = torch.Generator("cpu").manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g).to(dev, dt)
    lat = px // 8
    added = None
    if xl:  # latents, prompt embeddings (both encoders), pooled embedding; time ids: no crop, px x px (SDXL)
        x, emb, pooled, z = rnd(2, 4, lat, lat), rnd(2, 77, ctx), rnd(2, pooled_dim), rnd(1, 4, lat, lat)
        added = {"text_embeds": pooled, "time_ids": torch.tensor([[px, px, 0, 0, px, px]] * 2, dtype=torch.float32).to(dev, dt)}
    else:
        pe, ne = rnd(1, 77, ctx), rnd(1, 77, ctx)
        x, emb, z = rnd(2, 4, lat, lat), rnd(2, 77, ctx), rnd(1, 4, lat, lat)
    tt = torch.tensor([500., 500.], device=dev)
    unet_step = lambda: unet(x, tt, encoder_hidden_states=emb, added_cond_kwargs=added).sample
    vae_decode = lambda: vae.decode(z).sample
    warm, n_unet, n_vae = (3, 20, 5) if cuda else (1, 3, 2)
    outputs = {}  # for the comparison of the two stacks' outputs (bench/cpu_compare.sh)
    with torch.inference_mode():
        cpu = {}
        if run_unet:
            with Peak() as p:
                outputs["unet"] = unet_step().float().cpu()  # the first warm-up run
                res["unet_cfg2_step_ms"] = 1000 * timeit(unet_step, warm - 1, n_unet, cpu)
            res["unet_step_peak_device_bytes"], res["unet_cfg2_step_cpu_ms"] = p.peak, 1000 * cpu["s"]
        if run_vae:
            with Peak() as p:
                outputs["vae"] = vae_decode().float().cpu()  # the first warm-up run
                res["vae_decode_ms"] = 1000 * timeit(vae_decode, min(warm, 2) - 1, n_vae, cpu)
            res["vae_decode_peak_device_bytes"], res["vae_decode_cpu_ms"] = p.peak, 1000 * cpu["s"]
        if steps:
            sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           num_train_timesteps=1000)
            pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                                           safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            with Peak() as p:
                res["pipeline_s"] = timeit(lambda: pipe(prompt_embeds=pe, negative_prompt_embeds=ne, num_inference_steps=steps,
                                                        guidance_scale=7.5, height=px, width=px, output_type="pt"), 1, 3)
            res["pipeline_peak_device_bytes"] = p.peak
            res["pipeline_steps"] = steps
        torch.save(outputs, out + ".outputs.pt")
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


def cpu_flags():
    """The instruction-set extensions that matter for these kernels, as /proc/cpuinfo lists them."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            have = line.split(":", 1)[1].split()
            return [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                                "amx_bf16", "amx_int8") if f in have]
    return []


def mem_total():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


if __name__ == "__main__":
    import argparse
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        ap = argparse.ArgumentParser()
        ap.add_argument("weights"); ap.add_argument("out")
        ap.add_argument("--device", default="cuda"); ap.add_argument("--dtype", default=None)
        ap.add_argument("--threads", type=int, default=0); ap.add_argument("--steps", type=int, default=None)
        ap.add_argument("--size", default="sd15", choices=sorted(SIZES)); ap.add_argument("--resolution", type=int, default=0)
        ap.add_argument("--cases", default="unet,vae")
        a = ap.parse_args(sys.argv[2:])
        steps = a.steps if a.steps is not None else (0 if a.size == "sdxl" else 30)
        run(a.weights, a.out, a.device, a.dtype or ("fp16" if a.device.startswith("cuda") else "fp32"), a.threads,
            steps, a.size, a.resolution, a.cases)
    elif sys.argv[1] == "make":
        ap = argparse.ArgumentParser()
        ap.add_argument("weights"); ap.add_argument("--size", default="sd15", choices=sorted(SIZES))
        ap.add_argument("--threads", type=int, default=0)
        a = ap.parse_args(sys.argv[2:])
        if a.threads:
            import torch
            torch.set_num_threads(a.threads)
        make(a.weights, a.size)
    elif sys.argv[1] == "combine": combine(*sys.argv[2:5])
    elif sys.argv[1] == "combine-cpu":
        ap = argparse.ArgumentParser()
        ap.add_argument("work"); ap.add_argument("out"); ap.add_argument("--size", default="sd15")
        a = ap.parse_args(sys.argv[2:])
        combine_cpu(a.work, a.out, a.size)
    else: sys.exit(__doc__)
