#!/usr/bin/env python3
"""The diffusers side of the Stable Diffusion benchmark, on the GPU machine, and the combined JSON.

  sd_reference.py run WEIGHTS_DIR OUT.json   random SD 1.5-size UNet and VAE (the configs of
      ../shared/device/reference_baseline.py), saved as a diffusers folder in WEIGHTS_DIR so that
      loupe-bench-sd --weights WEIGHTS_DIR runs the very same weights; then diffusers' timings (fp16,
      512 x 512, UNet step with guidance, VAE decode, 30-step Euler pipeline at guidance 7.5) and
      peak device memory sampled like loupe-bench-sd does (used device memory, every millisecond).
  sd_reference.py combine REF.json LOUPE.json RESULT.json   both stacks side by side with a
      "speedup" (reference time / Loupe time) per case.
diffusers comes from its source on PYTHONPATH (never committed); transformers and torch are the
machine's."""
import json, os, sys

from reference_util import Peak, timeit

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

def run(weights, out):
    import torch
    import diffusers
    from diffusers import UNet2DConditionModel, AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline
    dev, dt = "cuda", torch.float16
    torch.manual_seed(0)
    with torch.device(dev):
        unet = UNet2DConditionModel(cross_attention_dim=768).to(dt).eval()
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                            sample_size=512).to(dt).eval()
    unet.save_pretrained(os.path.join(weights, "unet"))
    vae.save_pretrained(os.path.join(weights, "vae"))
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    res = {"stack": "diffusers", "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                               "diffusers": diffusers.__version__},
           "machine": torch.cuda.get_device_name(0)}
    pe = torch.randn(1, 77, 768, device=dev, dtype=dt); ne = torch.randn(1, 77, 768, device=dev, dtype=dt)
    lat = torch.randn(2, 4, 64, 64, device=dev, dtype=dt); tt = torch.tensor([500., 500.], device=dev)
    emb = torch.randn(2, 77, 768, device=dev, dtype=dt); z = torch.randn(1, 4, 64, 64, device=dev, dtype=dt)
    with torch.inference_mode():
        with Peak() as p:
            res["unet_cfg2_step_ms"] = 1000 * timeit(lambda: unet(lat, tt, encoder_hidden_states=emb), 3, 20)
        res["unet_step_peak_device_bytes"] = p.peak
        with Peak() as p:
            res["vae_decode_ms"] = 1000 * timeit(lambda: vae.decode(z), 2, 5)
        res["vae_decode_peak_device_bytes"] = p.peak
        with Peak() as p:
            res["pipeline_s"] = timeit(lambda: pipe(prompt_embeds=pe, negative_prompt_embeds=ne, num_inference_steps=30,
                                                    guidance_scale=7.5, height=512, width=512, output_type="pt"), 1, 3)
        res["pipeline_peak_device_bytes"] = p.peak
    res["max_memory_reserved_bytes"] = torch.cuda.max_memory_reserved()
    json.dump(res, open(out, "w"), indent=2)
    print(json.dumps(res, indent=2))

if __name__ == "__main__":
    if sys.argv[1] == "run": run(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "combine": combine(*sys.argv[2:5])
    else: sys.exit(__doc__)
