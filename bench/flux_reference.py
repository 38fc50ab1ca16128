#!/usr/bin/env python3
"""The diffusers side of the FLUX.1 schnell benchmark (issue 17), the random-weight pipeline folder both
stacks load, and the combined JSON. bench/flux_compare.sh runs it all.

  flux_reference.py make DIR [--double 2] [--single 4] [--t5-layers 2] [--store bf16|fp32]
      A FLUX.1-schnell-shaped diffusers folder with random weights (seeded), made by diffusers and
      transformers themselves: transformer/ (FluxTransformer2DModel at FLUX.1's width: 24 heads x 128,
      joint_attention_dim 4096, pooled 768, in_channels 64, RoPE axes (16, 56, 56), no guidance
      embedding; `--double` + `--single` blocks instead of 19 + 38), text_encoder/ (CLIPTextModel,
      CLIP-L's size), text_encoder_2/ (T5EncoderModel at T5 v1.1 XXL's width: d_model 4096, d_ff
      10240, 64 heads, gated-gelu, vocabulary 32128; `--t5-layers` layers instead of 24), vae/ (the
      FLUX VAE's size: 16 latent channels, scaling 0.3611, shift 0.1159, no quant convs), scheduler/
      (schnell's FlowMatchEulerDiscreteScheduler config), tokenizer/ and tokenizer_2/ (the tiny test
      vocabularies of tests/fixtures/flux/pipeline: the published ones cannot be fetched here; the
      compute does not depend on them, CLIP always runs 77 positions and T5 256). Weights are stored in
      bf16 as FLUX.1 is published (or fp32); every random draw comes from one seeded generator.
  flux_reference.py step DIR OUT.json --size 512 [--dtype fp32|bf16] [--threads N] [--warm 1] [--n 3]
      One transformer forward at SIZE x SIZE (SIZE/16 squared image tokens) with 256 text tokens,
      timestep 1 (schnell's first sigma): inputs drawn from torch.manual_seed(0) in the order
      loupe-bench-flux draws them; after the timed runs, one more run times every block (forward
      hooks) for a full-size (19 + 38 blocks) estimate; the output goes to OUT.json.outputs.pt.
  flux_reference.py image DIR OUT.json --size 512 [--dtype fp32] [--threads N] [--steps 4] [--warm-steps 1]
      FluxPipeline from the prompt: CLIP-L + T5 (256 tokens), 4 flow-matching Euler steps, the VAE
      decode; seed 0 on a CPU generator; one warm-up image of --warm-steps steps first (0: none). The
      image (uint8, as numpy_to_pil rounds it) goes to OUT.json.outputs.pt.
  flux_reference.py combine RUNS_DIR WEIGHTS_DIR RESULT.json
      Every run of RUNS_DIR side by side: speedup = diffusers time / Loupe time per case, peak memory of
      both, the distance of each output from diffusers fp32's.
Peak memory: the process's resident set sampled every millisecond while a case runs (bench/reference_util.py,
as loupe-bench-flux does), and the process's peak (VmHWM). diffusers and transformers come from their
source in .ref/ through tests/fixtures/gen/shims/fluxshim.py (Debian's torch 1.13 here); on that torch,
fluxshim's scaled_dot_product_attention is the math formulation (softmax(q k^T) v). The shims' pure-Python
safetensors reads whole files into memory; this script maps files instead (as the safetensors package does),
so that the loaders' peak memory is not the stand-in's."""
import importlib, json, os, struct, sys, time

if os.environ.get("LOUPE_REF_SHIM"):  # Debian's torch 1.13 here: tests/fixtures/gen/shims/fluxshim.py
    importlib.import_module(os.environ["LOUPE_REF_SHIM"])

import torch

from reference_util import Peak, rss_bytes, timeit

PROMPT = "a photo of a red fox sitting in the snow at sunrise, detailed fur, 35mm"
TEXT_TOKENS = 256  # schnell's max_sequence_length
SCHNELL_SCHED = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                 "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "flux", "pipeline", "tiny-flux-schnell")


# --- safetensors through a file mapping (the shims' stand-in reads whole files) -----------------------

def _map_safetensors():
    import mmap
    st = sys.modules.get("safetensors")
    if st is None or not getattr(st, "__version__", "").endswith("loupe-standin"):
        return  # the real package: it maps files itself
    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}

    class Mapped:
        def __init__(self, path, framework="pt", device="cpu"):
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                self.header = json.loads(f.read(n))
                # a private mapping: pages come from the page cache, written ones are copied (torch
                # wants a writable buffer); the tensors keep the mapping alive
                self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            self.base, self.device = 8 + n, device

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def keys(self):
            return [k for k in self.header if k != "__metadata__"]

        def metadata(self):
            return self.header.get("__metadata__")

        def get_tensor(self, name):
            info = self.header[name]
            a, b = info["data_offsets"]
            dt = dtypes[info["dtype"]]
            if b == a:
                return torch.empty(info["shape"], dtype=dt)
            size = torch.empty(0, dtype=dt).element_size()
            t = torch.frombuffer(self.mm, dtype=dt, count=(b - a) // size, offset=self.base + a)
            return t.reshape(info["shape"]).to(self.device)

    def load_file(path, device="cpu"):
        f = Mapped(path, device=device)
        return {k: f.get_tensor(k) for k in f.keys()}

    # the stand-in's functions, wherever a module imported them already (transformers' modeling_utils)
    swap = {id(st.safe_open): Mapped, id(st.torch.safe_open): Mapped, id(st.torch.load_file): load_file}
    for mod in list(sys.modules.values()):
        for attr, value in list(getattr(mod, "__dict__", {}).items()):
            if id(value) in swap and callable(value):
                setattr(mod, attr, swap[id(value)])


_map_safetensors()


def dtype_of(name):
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"


def versions():
    import diffusers
    import transformers
    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


def transformer_config(double, single):
    return dict(patch_size=1, in_channels=64, num_layers=double, num_single_layers=single, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=False,
                axes_dims_rope=(16, 56, 56))


VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
           act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
           shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True,
           mid_block_add_attention=True)


# --- the folder ------------------------------------------------------------------------------------------

def randomize(module, g):
    """Random weights everywhere (diffusers zero-initialises some layers), as the fixture scripts do:
    norm scales 1 + 0.1 N(0, 1), other vectors 0.05 N(0, 1), matrices N(0, 1) / sqrt(fan-in) (the
    AdaLayerNorm modulation linears "norm1.linear" too: at FLUX.1's width the fixtures' rule, which
    gives every weight named *norm*.weight 1 + 0.1 N(0, 1), makes modulations in the thousands)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    return module


def save_file(tensors, path, metadata=None):
    """The safetensors format written one tensor at a time (the shims' writer builds the whole file in
    memory first)."""
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in tensors.values():
            f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().data)


class Cast(dict):
    """A state dict whose tensors are cast to the stored dtype as they are written."""

    def __init__(self, sd, dt, drop=()):
        super().__init__((k, v) for k, v in sd.items() if k not in drop)
        self.dt = dt

    def items(self):
        return ((k, self[k]) for k in self)

    def __getitem__(self, k):
        return dict.__getitem__(self, k).to(self.dt)

    def values(self):
        return (self[k] for k in self)


def make(folder, double=2, single=4, t5_layers=2, store="bf16"):
    import shutil
    import diffusers
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
    torch.set_grad_enabled(False)
    sdt = dtype_of(store)
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    g = torch.Generator().manual_seed(2026)
    sizes = {}

    def save_diffusers(sub, m, weights="diffusion_pytorch_model.safetensors"):
        os.makedirs(os.path.join(tmp, sub))
        cfg = dict(m.config)
        cfg["_class_name"] = m.__class__.__name__
        cfg["_diffusers_version"] = diffusers.__version__
        json.dump({k: v for k, v in cfg.items() if not k.startswith("_use_default")},
                  open(os.path.join(tmp, sub, "config.json"), "w"), indent=1, default=list)
        save_file(Cast(m.state_dict(), sdt), os.path.join(tmp, sub, weights))

    def save_transformers(sub, m, drop=()):
        os.makedirs(os.path.join(tmp, sub))
        m.config.torch_dtype = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}[store]
        m.config.to_json_file(os.path.join(tmp, sub, "config.json"))
        save_file(Cast(m.state_dict(), sdt, drop), os.path.join(tmp, sub, "model.safetensors"), metadata={"format": "pt"})

    def params(m):
        return sum(p.numel() for p in m.parameters())

    # one part at a time (the memory of this 2-core, 24 GB machine)
    t = time.time()
    tr = randomize(FluxTransformer2DModel(**transformer_config(double, single)).eval(), g)
    sizes["transformer_params"] = params(tr)
    save_diffusers("transformer", tr)
    del tr
    print("transformer %.0f s" % (time.time() - t), flush=True)
    t5 = randomize(T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=t5_layers,
                                           num_heads=64, relative_attention_num_buckets=32,
                                           relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                                           feed_forward_proj="gated-gelu", dropout_rate=0.0, tie_word_embeddings=False,
                                           is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                                           eos_token_id=1)).eval(), g)
    sizes["t5_params"] = params(t5)
    # T5EncoderModel's tied copy of the embedding is not saved (as save_pretrained leaves it out)
    save_transformers("text_encoder_2", t5, drop=("encoder.embed_tokens.weight",))
    del t5
    # CLIP-L (openai/clip-vit-large-patch14's text config: bos 0, eos 2 = the pooled token at argmax(ids))
    clip = randomize(CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                                  num_hidden_layers=12, num_attention_heads=12,
                                                  max_position_embeddings=77, hidden_act="quick_gelu",
                                                  layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2,
                                                  pad_token_id=1, projection_dim=768)).eval(), g)
    sizes["clip_params"] = params(clip)
    save_transformers("text_encoder", clip)
    del clip
    vae = randomize(AutoencoderKL(**VAE).eval(), g)
    sizes["vae_params"] = params(vae)
    save_diffusers("vae", vae)
    del vae
    shutil.copytree(os.path.join(TINY, "tokenizer"), os.path.join(tmp, "tokenizer"))
    shutil.copytree(os.path.join(TINY, "tokenizer_2"), os.path.join(tmp, "tokenizer_2"))
    os.makedirs(os.path.join(tmp, "scheduler"))
    json.dump(dict(SCHNELL_SCHED, _class_name="FlowMatchEulerDiscreteScheduler", _diffusers_version=diffusers.__version__),
              open(os.path.join(tmp, "scheduler", "scheduler_config.json"), "w"), indent=1)
    json.dump({"_class_name": "FluxPipeline", "_diffusers_version": diffusers.__version__,
               "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
               "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
               "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
              open(os.path.join(tmp, "model_index.json"), "w"), indent=1)
    info = dict(sizes, double_blocks=double, single_blocks=single, t5_layers=t5_layers, stored=store, seed=2026,
                tokenizers="the tiny test vocabularies of tests/fixtures/flux/pipeline/tiny-flux-schnell",
                made_by=versions())
    json.dump(info, open(os.path.join(tmp, "bench_info.json"), "w"), indent=1)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)
    print(json.dumps(info, indent=1))


# --- the cases ------------------------------------------------------------------------------------------

def step(folder, out, size=512, dtype="fp32", threads=0, warm=1, n=3):
    from diffusers import FluxPipeline, FluxTransformer2DModel
    torch.set_grad_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    dt = dtype_of(dtype)
    res = {"stack": "diffusers", "case": "step", "versions": versions(), "machine": cpu_name(), "dtype": dtype,
           "threads": torch.get_num_threads(), "size": size, "text_tokens": TEXT_TOKENS}
    t = time.perf_counter()
    with Peak() as p:
        tr = FluxTransformer2DModel.from_pretrained(os.path.join(folder, "transformer"), torch_dtype=dt).eval()
    res["load_s"], res["load_peak_rss_bytes"] = time.perf_counter() - t, p.peak
    res["attention_processor"] = type(next(iter(tr.attn_processors.values()))).__name__
    lat = size // 8  # latent side; packed 2 x 2: (lat/2)^2 image tokens
    torch.manual_seed(0)  # drawn in loupe-bench-flux's order
    hidden = torch.randn(1, (lat // 2) ** 2, 64)
    enc = torch.randn(1, TEXT_TOKENS, 4096)
    pooled = torch.randn(1, 768)
    img_ids = FluxPipeline._prepare_latent_image_ids(1, lat // 2, lat // 2, "cpu", torch.float32)
    txt_ids = torch.zeros(TEXT_TOKENS, 3)
    timestep = torch.tensor([1.0])
    res["image_tokens"] = hidden.shape[1]
    args = dict(hidden_states=hidden.to(dt), encoder_hidden_states=enc.to(dt), pooled_projections=pooled.to(dt),
                timestep=timestep.to(dt), img_ids=img_ids, txt_ids=txt_ids, guidance=None, return_dict=False)
    fwd = lambda: tr(**args)[0]

    cpu = {}
    with Peak() as p:
        res["step_ms"] = 1000 * timeit(fwd, warm, n, cpu)
    res["step_cpu_ms"], res["step_peak_rss_bytes"] = 1000 * cpu["s"], p.peak
    res["step_warm_up_runs"], res["step_runs"] = warm, n
    # one more run with every block timed (forward hooks)
    marks, handles = {}, []
    blocks = [("double", b) for b in tr.transformer_blocks] + [("single", b) for b in tr.single_transformer_blocks]
    for i, (_, b) in enumerate(blocks):
        handles.append(b.register_forward_pre_hook(lambda m, a, i=i: marks.__setitem__((i, 0), time.perf_counter())))
        handles.append(b.register_forward_hook(lambda m, a, o, i=i: marks.__setitem__((i, 1), time.perf_counter())))
    t = time.perf_counter()
    fwd()
    total = 1000 * (time.perf_counter() - t)
    for h in handles:
        h.remove()
    res["blocks_ms"] = block_summary([(kind, 1000 * (marks[(i, 1)] - marks[(i, 0)])) for i, (kind, _) in enumerate(blocks)],
                                     total)
    res["blocks_ms"]["run_ms"] = total
    torch.save({"step": fwd().float()}, out + ".outputs.pt")
    res["process_peak_rss_bytes"] = rss_bytes(peak=True)
    json.dump(res, open(out, "w"), indent=2)
    print(json.dumps(res, indent=2))


def block_summary(times, total_ms):
    """Per-block times of one run -> mean double / single block, the rest, and the full FLUX.1
    (19 + 38 blocks) step estimated from them."""
    d = [t for k, t in times if k == "double"]
    s = [t for k, t in times if k == "single"]
    rest = total_ms - sum(d) - sum(s)
    md, ms = sum(d) / max(len(d), 1), sum(s) / max(len(s), 1)
    return {"double": d, "single": s, "double_mean": md, "single_mean": ms, "rest": rest,
            "full_flux1_19_38_estimate": rest + 19 * md + 38 * ms}


def image(folder, out, size=512, dtype="fp32", threads=0, steps=4, warm_steps=1):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer
    torch.set_grad_enabled(False)
    if threads:
        torch.set_num_threads(threads)
    dt = dtype_of(dtype)
    res = {"stack": "diffusers", "case": "image", "versions": versions(), "machine": cpu_name(), "dtype": dtype,
           "threads": torch.get_num_threads(), "size": size, "steps": steps, "prompt": PROMPT, "seed": 0}
    t = time.perf_counter()
    with Peak() as p:
        # T5TokenizerFast (model_index.json) needs the tokenizers package, absent here: the slow
        # T5Tokenizer, as tests/fixtures/gen/make_flux_pipeline_tiny.py runs FluxPipeline
        pipe = FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(folder, "scheduler")),
            vae=AutoencoderKL.from_pretrained(os.path.join(folder, "vae"), torch_dtype=dt).eval(),
            text_encoder=CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), torch_dtype=dt).eval(),
            tokenizer=CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer")),
            text_encoder_2=T5EncoderModel.from_pretrained(os.path.join(folder, "text_encoder_2"), torch_dtype=dt).eval(),
            tokenizer_2=T5Tokenizer.from_pretrained(os.path.join(folder, "tokenizer_2")),
            transformer=FluxTransformer2DModel.from_pretrained(os.path.join(folder, "transformer"), torch_dtype=dt).eval())
    pipe.set_progress_bar_config(disable=True)
    res["load_s"], res["load_peak_rss_bytes"] = time.perf_counter() - t, p.peak
    marks = []

    def run(n_steps):
        marks.clear()
        marks.append(time.perf_counter())
        img = pipe(prompt=PROMPT, num_inference_steps=n_steps, guidance_scale=0.0, height=size, width=size,
                   max_sequence_length=TEXT_TOKENS, generator=torch.Generator("cpu").manual_seed(0), output_type="pt",
                   callback_on_step_end=lambda p, i, t, kw: (marks.append(time.perf_counter()), {})[1]).images
        marks.append(time.perf_counter())
        return img

    if warm_steps:
        t = time.perf_counter()
        run(warm_steps)
        res["warm_up_image_steps"], res["warm_up_image_s"] = warm_steps, time.perf_counter() - t
    with Peak() as p:
        img = run(steps)
    res["image_s"], res["image_peak_rss_bytes"] = marks[-1] - marks[0], p.peak
    res["stages_s"] = stages(marks, steps)
    torch.save({"image": (img[0].float() * 255).round().clamp(0, 255).to(torch.uint8)}, out + ".outputs.pt")
    res["process_peak_rss_bytes"] = rss_bytes(peak=True)
    json.dump(res, open(out, "w"), indent=2)
    print(json.dumps(res, indent=2))


def stages(marks, steps):
    """Start, the end of every step, the end -> the text encoders (the first step's span less a later
    step's mean), each step, the VAE decode and the conversion of the image."""
    start, ends, end = marks[0], marks[1:1 + steps], marks[-1]
    later = [ends[i] - ends[i - 1] for i in range(1, steps)]
    step_mean = sum(later) / len(later) if later else None
    first = ends[0] - start
    return {"prompt_and_first_step": first, "later_steps": later, "step_mean_of_later": step_mean,
            "text_encoders_estimate": first - step_mean if step_mean else None, "decode_and_output": end - ends[-1]}


# Why 2 + 4 blocks and 2 T5 layers (measured here, 2026-12-02: 256 x 256 probes, then the 512 run): the
# published ratio of double to single blocks (1 : 2), 1.30B transformer parameters (11% of FLUX.1's 11.9B);
# a whole fp32 pipeline process then peaks at about 12.5 GB (either stack) of this machine's 24 GB, which
# leaves room for the other programs on it; one step at 512 x 512 takes 10-13 s in fp32 and a whole
# 4-step image about a minute, so that every case of both stacks runs in under 10 minutes. Per-block
# times give the full model's step (full_flux1_step_estimate_ms).
BLOCK_CHOICE = ("2 double + 4 single blocks: FLUX.1's 1 : 2 ratio at 1.30B parameters (11% of 11.9B), so that a "
                "whole fp32 pipeline (both stacks: about 12.5 GB peak) fits this 24 GB machine next to other "
                "programs and every case of both stacks runs in minutes; T5 2 layers of 24 (0.52B parameters with "
                "its 32128 x 4096 embedding); the full model's step is estimated from per-block times")

# --- the combined JSON ---------------------------------------------------------------------------------

def combine(work, weights, out_path):
    import platform
    from safetensors.torch import load_file
    runs = {}
    for f in sorted(os.listdir(work)):
        if f.endswith(".json") and (f.startswith("loupe-") or f.startswith("diffusers-")):
            runs[f[:-5]] = json.load(open(os.path.join(work, f)))
    info = json.load(open(os.path.join(weights, "bench_info.json")))

    def outputs(name):
        if name.startswith("loupe"):
            p = os.path.join(work, name + ".safetensors")
            return load_file(p) if os.path.exists(p) else {}
        p = os.path.join(work, name + ".json.outputs.pt")
        return torch.load(p) if os.path.exists(p) else {}

    cases, memory, distance, stage, blocks, placement = {}, {}, {}, {}, {}, {}
    for case, key, unit in (("transformer_step", "step_ms", "ms"), ("schnell_4_step_image", "image_s", "s")):
        short = "step" if case == "transformer_step" else "image"
        c = {"unit": unit}
        for name, r in runs.items():
            if r.get("case") == short and key in r:
                c[name] = r[key]
        for name in list(c):
            if name.startswith("loupe-"):
                dt = name.split("-")[-1]
                for ref in ("diffusers-%s-fp32" % short, "diffusers-%s-%s" % (short, dt)):
                    if ref in c and c[name]:
                        c["speedup_%s_vs_%s" % (name, ref)] = round(c[ref] / c[name], 3)
        cases[case] = c
    for name, r in runs.items():
        memory[name] = {k: r.get(k) for k in ("load_peak_rss_bytes", "step_peak_rss_bytes", "image_peak_rss_bytes",
                                              "process_peak_rss_bytes") if r.get(k) is not None}
        if "stages_s" in r:
            stage[name] = r["stages_s"]
        if "blocks_ms" in r:
            blocks[name] = r["blocks_ms"]
        if r.get("stack") == "loupe":
            placement[name] = r.get("transformer_placement")
        if name.startswith("diffusers-") and name.endswith("-fp32"):
            continue
        ref_name = "diffusers-%s-fp32" % r.get("case")
        ref, got = outputs(ref_name), outputs(name)
        for k in ("step", "image"):
            if k in ref and k in got:
                a, b = got[k].float(), ref[k].float()
                if k == "image":
                    a, b = a / 255, b / 255
                distance.setdefault(name, {})[k] = {
                    "vs": ref_name, "max_abs": float((a - b).abs().max()), "mean_abs": float((a - b).abs().mean()),
                    "reference_mean_abs": float(b.abs().mean()),
                    "relative_l2": float((a - b).norm() / b.norm())}
    any_run = next(iter(runs.values()))
    d = next((r for r in runs.values() if r["stack"] == "diffusers" and r.get("case") == "step"),
             next((r for r in runs.values() if r["stack"] == "diffusers"), {}))
    speedup = {case: {k.split("_vs_")[0][len("speedup_"):]: v for k, v in c.items()
                      if k.startswith("speedup_") and k.endswith("-fp32") and "_vs_diffusers-" in k}
               for case, c in cases.items()}
    estimate = {name: b["full_flux1_19_38_estimate"] for name, b in blocks.items()}
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    lo = next((r for r in runs.values() if r["stack"] == "loupe"), {})
    result = {
        "benchmark": "flux1-schnell-cpu",
        "what": ("FLUX.1 schnell with random weights at FLUX.1's width and fewer blocks (sizes below), the same folder "
                 "for both stacks, each run in its own process, one after the other, on every core: one transformer "
                 "forward at the image size with 256 text tokens (timestep 1, inputs drawn identically; median of "
                 "the timed runs after a warm-up run; one more run times each block), and a whole 4-step schnell image "
                 "from a prompt (CLIP-L, T5, 4 flow-matching Euler steps, VAE decode; seed 0), one timed run after a 1-step warm-up "
                 "image; Loupe through its FLUX session (families/flux), diffusers through FluxPipeline. speedup = "
                 "diffusers time / Loupe time. Peak memory: the process's resident set sampled every ms while a "
                 "case runs, and the process's peak (VmHWM)."),
        "machine": {"cpu": any_run.get("machine"), "threads": any_run.get("threads"), "platform": platform.platform(),
                    "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                    "cpu_flags_of_note": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]},
        "run_note": os.environ.get("LOUPE_BENCH_NOTE"),
        "versions": {"diffusers_side": d.get("versions"), "loupe_build": lo.get("build")},
        "diffusers_attention": d.get("attention_processor"),
        "diffusers_notes": ("torch 1.13 (Debian) through tests/fixtures/gen/shims/fluxshim.py: attention is the shim's "
                            "scaled_dot_product_attention (softmax(q k^T) v, the math path of torch 2's function); "
                            "safetensors files are memory-mapped by bench/flux_reference.py; no accelerate, so "
                            "from_pretrained builds each model (initialised) and then copies the weights in"),
        "sizes": {"image": "%dx%d" % (any_run.get("size"), any_run.get("size")), "text_tokens": TEXT_TOKENS,
                  "image_tokens": (any_run.get("size") // 16) ** 2,
                  "transformer": {"double_blocks": info["double_blocks"], "single_blocks": info["single_blocks"],
                                  "published": "19 double + 38 single",
                                  "why_these_blocks": BLOCK_CHOICE,
                                  "inner_dim": 3072, "heads": 24, "head_dim": 128, "joint_attention_dim": 4096,
                                  "pooled_projection_dim": 768, "in_channels": 64, "axes_dims_rope": [16, 56, 56],
                                  "guidance_embeds": False, "params": info["transformer_params"]},
                  "t5": {"layers": info["t5_layers"], "published_layers": 24, "d_model": 4096, "d_ff": 10240,
                         "heads": 64, "params": info["t5_params"]},
                  "clip_l": {"layers": 12, "params": info["clip_params"]},
                  "vae": {"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159,
                          "params": info["vae_params"]},
                  "weights_stored": info["stored"], "tokenizers": info["tokenizers"]},
        "speedup_vs_diffusers_fp32": speedup,
        "cases": cases,
        "peak_memory_bytes": memory,
        "loupe_transformer_placement": placement,
        "output_distance_from_diffusers_fp32": distance,
        "image_stages_s": stage,
        "transformer_blocks_ms": blocks,
        "full_flux1_step_estimate_ms": {
            "what": "the whole FLUX.1 transformer (19 double + 38 single blocks) at this size: the measured rest of "
                    "the forward + 19 x the mean double block + 38 x the mean single block of the block-timed run",
            **estimate},
        "raw": runs,
    }
    json.dump(result, open(out_path, "w"), indent=2)
    print(json.dumps({"cases": cases, "peak_memory_bytes": memory, "distance": distance, "placement": placement}, indent=2))


if __name__ == "__main__":
    import argparse
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    ap = argparse.ArgumentParser()
    if cmd == "make":
        ap.add_argument("folder")
        ap.add_argument("--double", type=int, default=2); ap.add_argument("--single", type=int, default=4)
        ap.add_argument("--t5-layers", type=int, default=2); ap.add_argument("--store", default="bf16")
        a = ap.parse_args(sys.argv[2:])
        make(a.folder, a.double, a.single, a.t5_layers, a.store)
    elif cmd in ("step", "image"):
        ap.add_argument("folder"); ap.add_argument("out")
        ap.add_argument("--size", type=int, default=512); ap.add_argument("--dtype", default="fp32")
        ap.add_argument("--threads", type=int, default=0)
        ap.add_argument("--warm", type=int, default=1); ap.add_argument("--n", type=int, default=3)
        ap.add_argument("--steps", type=int, default=4); ap.add_argument("--warm-steps", type=int, default=1)
        a = ap.parse_args(sys.argv[2:])
        if cmd == "step":
            step(a.folder, a.out, a.size, a.dtype, a.threads, a.warm, a.n)
        else:
            image(a.folder, a.out, a.size, a.dtype, a.threads, a.steps, a.warm_steps)
    elif cmd == "combine":
        combine(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
