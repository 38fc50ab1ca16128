// The one table of tasks: every task the library knows, its inputs, parameters and outputs, with
// generic defaults. A session offers a subset (Model::tasks()) and may adjust defaults and ranges
// to its model (e.g. the native image size, the generation settings of its config). loupe.h's
// task list, loupe_request_create's check, the hosts' forms, loupe-cli's help and the bindings all
// come from here through loupe_task_* / loupe_tasks_json.
#include <cstdint>
#include <limits>

#include "core/tasks.h"
#include "schedulers/scheduler.h"

namespace loupe::tasks {

namespace {

Param integer(std::string name, std::string label, double def, double lo, double hi, std::string help,
              std::string unit = "", double step = 1, bool advanced = false) {
  Param p;
  p.name = std::move(name);
  p.type = ParamType::Int;
  p.label = std::move(label);
  p.def = def;
  p.min = lo;
  p.max = hi;
  p.step = step;
  p.help = std::move(help);
  p.unit = std::move(unit);
  p.advanced = advanced;
  return p;
}

Param real(std::string name, std::string label, double def, double lo, double hi, double step, std::string help,
           std::string unit = "", bool advanced = false) {
  Param p = integer(std::move(name), std::move(label), def, lo, hi, std::move(help), std::move(unit), step, advanced);
  p.type = ParamType::Float;
  return p;
}

Param flag(std::string name, std::string label, bool def, std::string help, bool advanced = false) {
  Param p = integer(std::move(name), std::move(label), def ? 1 : 0, 0, 1, std::move(help), "", 1, advanced);
  p.type = ParamType::Bool;
  return p;
}

Param text(std::string name, std::string label, std::string def, std::string help, bool advanced = false) {
  Param p;
  p.name = std::move(name);
  p.type = ParamType::String;
  p.label = std::move(label);
  p.def_string = std::move(def);
  p.help = std::move(help);
  p.advanced = advanced;
  return p;
}

Param choice(std::string name, std::string label, std::vector<std::string> choices, std::string help) {
  Param p = text(std::move(name), std::move(label), choices.empty() ? "" : choices.front(), std::move(help));
  p.type = ParamType::Choice;
  p.choices = std::move(choices);
  return p;
}

Task task(std::string name, std::string label, std::string group, std::string help, uint32_t inputs, uint32_t required,
          uint32_t outputs) {
  Task t;
  t.name = std::move(name);
  t.label = std::move(label);
  t.group = std::move(group);
  t.help = std::move(help);
  t.inputs = inputs;
  t.required = required;
  t.outputs = outputs;
  return t;
}

// Text generation from an image (Florence-2, and the vision-language families after it).
std::vector<Param> generation() {
  return {integer("max_new_tokens", "Max tokens", 1024, 1, 4096, "the most tokens the model may write", "tokens", 1, true),
          integer("num_beams", "Beams", 3, 1, 16, "beam search width (1 = greedy)", "", 1, true),
          integer("no_repeat_ngram_size", "No-repeat n-gram", 3, 0, 16,
                  "never repeat an n-gram of this size in the output (0 = off)", "tokens", 1, true)};
}

Task vision(std::string name, std::string label, std::string group, std::string help, uint32_t outputs,
            uint32_t extra_inputs = 0, std::string text_key = "", std::string text_label = "", std::string text_help = "") {
  Task t = task(std::move(name), std::move(label), std::move(group), std::move(help), kImage | extra_inputs,
                kImage | extra_inputs, outputs);
  t.text_key = std::move(text_key);
  t.text_label = std::move(text_label);
  t.text_help = std::move(text_help);
  t.params = generation();
  return t;
}

// The settings every diffusion task shares.
std::vector<Param> diffusion(double strength, const std::string& size_help, double size_default) {
  const double seed_max = static_cast<double>(std::numeric_limits<int64_t>::max());
  std::vector<Param> p = {
      text("negative_prompt", "Negative prompt", "", "what the image should not show"),
      integer("steps", "Steps", 20, 1, 150, "denoising steps", "steps"),
      real("guidance_scale", "Guidance", 7.5, 0, 50, 0.5, "how closely to follow the prompt (1 = no guidance)"),
      choice("sampler", "Sampler", schedulers::names(), "the sampling method"),
      integer("seed", "Seed", -1, -1, seed_max, "-1 = random; the result reports the seed used"),
      integer("width", "Width", size_default, 0, 8192, size_help, "px", 8),
      integer("height", "Height", size_default, 0, 8192, size_help, "px", 8),
      integer("batch_count", "Images", 1, 1, 16, "images made one after the other, seeds seed, seed+1, ...", "", 1, true),
      integer("clip_skip", "CLIP skip", 1, 1, 12, "use the text encoder's n-th last layer (2 for some fine-tunes)", "", 1, true),
      flag("vae_tiling", "Tiled VAE", false, "decode in tiles to save memory (automatic above 2 megapixels)", true)};
  if (strength > 0)
    p.insert(p.begin() + 3, real("strength", "Strength", strength, 0, 1, 0.05,
                                 "how much to change the image (0 = keep it, 1 = repaint completely)"));
  return p;
}

// SDXL's micro-conditioning (diffusers' StableDiffusionXL*Pipeline arguments original_size,
// crops_coords_top_left, target_size; the refiner's aesthetic_score / negative_aesthetic_score).
// Sessions of other models leave them out.
std::vector<Param> sdxl_conditioning() {
  return {integer("original_width", "Original width", 0, 0, 16384,
                  "SDXL: the width the model is told the source image had (0 = the generated width)", "px", 1, true),
          integer("original_height", "Original height", 0, 0, 16384,
                  "SDXL: the height the model is told the source image had (0 = the generated height)", "px", 1, true),
          integer("crop_left", "Crop left", 0, 0, 16384, "SDXL: the crop's left edge the model is told (0 = uncropped)", "px", 1,
                  true),
          integer("crop_top", "Crop top", 0, 0, 16384, "SDXL: the crop's top edge the model is told (0 = uncropped)", "px", 1, true),
          integer("target_width", "Target width", 0, 0, 16384, "SDXL: the target width the model is told (0 = the generated width)",
                  "px", 1, true),
          integer("target_height", "Target height", 0, 0, 16384,
                  "SDXL: the target height the model is told (0 = the generated height)", "px", 1, true),
          real("aesthetic_score", "Aesthetic score", 6.0, 0, 10, 0.5, "SDXL refiner: the aesthetic score it is conditioned on",
               "", true),
          real("negative_aesthetic_score", "Negative aesthetic score", 2.5, 0, 10, 0.5,
               "SDXL refiner: the aesthetic score of the negative conditioning", "", true)};
}

std::vector<Task> build() {
  std::vector<Task> t;
  // describe
  // PaliGemma writes captions and answers in many languages (its prompts name one: "caption en")
  const Param language = text("language", "Language", "en",
                              "the language to write in, as a code (en, de, fr, es, ja, zh, ...), for models that "
                              "write several (PaliGemma); others write their own");
  {
    Task x = vision("caption", "Caption", "describe", "a short caption of the image", kTextOut);
    x.params.push_back(language);
    // BLIP-2 continues a prompt ("a photo of"); sessions of models that take none leave it out
    x.params.push_back(text("prefix", "Starts with", "",
                            "the words the caption starts with (e.g. \"a photo of\"), for models that continue a "
                            "prefix (BLIP-2); empty = none",
                            true));
    t.push_back(std::move(x));
  }
  t.push_back(vision("detailed_caption", "Detailed caption", "describe", "a caption of a few sentences", kTextOut));
  t.push_back(vision("more_detailed_caption", "More detailed caption", "describe", "a paragraph describing the image", kTextOut));
  t.push_back(vision("dense_caption", "Dense region captions", "describe", "regions of the image, each with a caption", kBoxes));
  t.push_back(vision("region_caption", "Region caption", "describe", "a caption of the region", kTextOut, kRegion));
  t.push_back(vision("region_category", "Region category", "describe", "the category of the object in the region", kTextOut, kRegion));
  {
    Task x = vision("vqa", "Ask a question", "describe", "answers a question about the image", kTextOut, kQuestion, "question",
                    "question", "a question about the image");
    x.params.push_back(language);
    t.push_back(std::move(x));
  }
  // find
  t.push_back(vision("detect", "Detect objects", "find", "boxes around the objects, with their category", kBoxes));
  t.push_back(vision("region_proposal", "Region proposals", "find", "boxes around everything that may be an object", kBoxes));
  t.push_back(vision("ground", "Find phrases", "find", "boxes around what each phrase of a caption names", kBoxes, kText, "text",
                     "caption", "a caption; its phrases are located"));
  t.push_back(vision("open_vocabulary_detect", "Find anything", "find", "boxes (or outlines) around what the text names",
                     kBoxes | kPolygons, kText, "text", "description", "what to find, in words"));
  t.push_back(vision("segment", "Segment", "find", "the outline of what the text names", kPolygons, kText, "text", "description",
                     "what to outline, in words"));
  t.push_back(vision("region_segment", "Segment region", "find", "the outline of the object in the region", kPolygons, kRegion));
  // read
  t.push_back(vision("ocr", "Read text", "read", "the text in the image", kTextOut));
  t.push_back(vision("ocr_regions", "Read text with regions", "read", "each line of text with its quadrilateral",
                     kTextOut | kPolygons));
  // generate / edit
  {
    Task x = task("txt2img", "Text to image", "generate", "an image from a prompt", kText, 0, kImages | kNumbers);
    x.text_key = "prompt";
    x.text_label = "prompt";
    x.text_help = "what the image shows (may be empty: unconditional generation)";
    x.params = diffusion(0, "image size (multiple of 8)", 512);
    x.param("width").min = 8;
    x.param("height").min = 8;
    // SDXL's base + refiner hand-over (diffusers' denoising_end / denoising_start)
    x.params.push_back(text("refiner", "Refiner", "",
                            "a model (folder or file, e.g. the SDXL refiner) that does the last part of the steps; empty = none", true));
    x.params.push_back(real("refiner_switch", "Refiner switch", 0.8, 0.01, 0.99, 0.01,
                            "the fraction of the denoising done before the refiner takes over (diffusers' denoising_end)", "", true));
    for (auto& p : sdxl_conditioning()) x.params.push_back(std::move(p));
    t.push_back(std::move(x));
  }
  {
    Task x = task("img2img", "Image to image", "edit", "the image redrawn following a prompt", kImage | kText, kImage,
                  kImages | kNumbers);
    x.text_key = "prompt";
    x.text_label = "prompt";
    x.text_help = "what the new image shows";
    x.params = diffusion(0.75, "processing size (multiple of 8); 0 = the image's size rounded to 8", 0);
    for (auto& p : sdxl_conditioning()) x.params.push_back(std::move(p));
    t.push_back(std::move(x));
  }
  {
    Task x = task("inpaint", "Inpaint", "edit", "repaints the masked part of the image following a prompt",
                  kImage | kMask | kText, kImage | kMask, kImages | kNumbers);
    x.text_key = "prompt";
    x.text_label = "prompt";
    x.text_help = "what the masked part shows";
    x.params = diffusion(1.0, "processing size (multiple of 8); 0 = the image's size (or the crop's, at the model's size)", 0);
    x.params.push_back(real("mask_blur", "Mask blur", 4, 0, 64, 1, "blurs the mask's edge for the model", "px"));
    x.params.push_back(real("feather", "Feather", 8, 0, 256, 1, "blends the result into the image inwards from the mask's edge", "px"));
    x.params.push_back(flag("only_masked", "Only masked area", false,
                            "repaint a crop around the mask at the model's size (more detail for small areas)"));
    x.params.push_back(integer("padding", "Padding", 32, 0, 4096, "context around the mask when only the masked area is repainted",
                               "px", 1, true));
    x.params.push_back(flag("color_correction", "Colour correction", false, "matches the repainted colours to the image around it",
                            true));
    for (auto& p : sdxl_conditioning()) x.params.push_back(std::move(p));
    t.push_back(std::move(x));
  }
  {
    // Edit by words: two sessions, a finder and a painter (loupe_edit_submit); the chain is
    // pipelines/edit.cpp (the mask rules are written there and in loupe.h).
    Task x = task("edit", "Edit by words", "edit",
                  "finds what the words name, masks it and repaints only that area following a prompt (or removes it)",
                  kImage | kText | kMask, kImage | kText, kImages | kMasks | kBoxes | kPolygons | kNumbers);
    x.runtime = true;
    x.text_key = "target";
    x.text_label = "target";
    x.text_help = "what to change, in words (e.g. \"the red car\")";
    x.params = {text("prompt", "With what", "", "what it becomes (e.g. \"a blue bicycle\"); empty = remove it (filled from its surroundings)"),
                choice("find_with", "Find with", {"auto", "segment", "boxes"},
                       "auto: the finder's outline (segment) when it has one, else its boxes"),
                integer("grow", "Grow", 8, 0, 256, "widens the found mask by this distance (the object's edge, its shadow)", "px"),
                flag("paint", "Paint", true, "off: only find and build the mask (to check or adjust it first; no painter needed)"),
                integer("max_new_tokens", "Finder tokens", 0, 0, 4096, "the most tokens the finder may write (0 = its default)",
                        "tokens", 1, true),
                integer("num_beams", "Finder beams", 0, 0, 16, "the finder's beam search width (0 = its default, 1 = greedy)", "", 1,
                        true)};
    // The painter's settings are the inpaint task's (feather: the inward blend; outside the mask
    // nothing changes), one image at a time, repainting a crop around the mask by default.
    for (const Param& p : t.back().params)
      if (p.name != "batch_count") x.params.push_back(p);
    x.param("only_masked").def = 1;
    t.push_back(std::move(x));
  }
  // runtime
  {
    Task x = task("selftest", "Self-test", "runtime", "allocates, runs a known matrix product, checks it and measures speed", 0, 0,
                  kNumbers);
    x.runtime = true;
    x.params = {integer("alloc_mib", "Allocation", 0, 0, double(int64_t(1) << 30), "memory to allocate (0 = 1024 on a GPU, 64 on the CPU)", "MiB"),
                integer("matmul_size", "Matrix size", 0, 0, 16384, "n of the n x n matrix product, 64 to 16384 (0 = 8192 on a GPU, 512 on the CPU)"),
                integer("iterations", "Iterations", 0, 0, 100000, "timed products (0 = 20 on a GPU, 3 on the CPU)")};
    t.push_back(std::move(x));
  }
  {
    Task x = task("download", "Download", "runtime", "fetches a catalog model (or files of a repo) from a Hugging Face-style hub",
                  0, 0, kTextOut | kNumbers);
    x.runtime = true;
    x.params = {text("catalog_id", "Catalog entry", "", "an entry of the catalog, e.g. florence2-base"),
                text("repo", "Repository", "", "ORG/NAME on the hub (instead of catalog_id)"),
                text("files", "Files", "", "comma-separated paths in the repository (with repo)"),
                text("revision", "Revision", "", "branch, tag or commit (default: the catalog's, else main)"),
                text("dest", "Destination", "", "the folder to download into (default: models_dir / the entry's folder)"),
                text("endpoint", "Endpoint", "", "the hub's URL (default HF_ENDPOINT, else https://huggingface.co)", true),
                text("catalog", "Catalog file", "", "a catalog file instead of the built-in one", true)};
    t.push_back(std::move(x));
  }
  return t;
}

}  // namespace

const std::vector<Task>& table() {
  static const std::vector<Task> t = build();
  return t;
}

}  // namespace loupe::tasks
