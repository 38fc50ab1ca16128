#include "models/clip/clip_vocab.h"

#include <filesystem>

#include "core/error.h"
#include "core/hub.h"
#include "io/hf_cache.h"

namespace fs = std::filesystem;

namespace loupe::clip {

namespace {

bool has_vocab(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "vocab.json", ec) && fs::is_regular_file(dir / "merges.txt", ec);
}

}  // namespace

std::string clip_vocab_cache_dir() {
  const std::string d = io::loupe_data_dir();
  return d.empty() ? "" : (fs::path(d) / "tokenizers" / "clip").string();
}

const std::vector<std::string>& clip_vocab_repos() {
  static const std::vector<std::string> repos{
      "openai/clip-vit-large-patch14",
      "stable-diffusion-v1-5/stable-diffusion-v1-5",
      "runwayml/stable-diffusion-v1-5",
      "stable-diffusion-v1-5/stable-diffusion-inpainting",
      "runwayml/stable-diffusion-inpainting",
      "CompVis/stable-diffusion-v1-4",
      "stabilityai/stable-diffusion-2-1",
      "stabilityai/stable-diffusion-2-1-base",
      "stabilityai/stable-diffusion-2",
      "stabilityai/stable-diffusion-2-base",
      "stabilityai/stable-diffusion-2-inpainting",
      "stabilityai/stable-diffusion-xl-base-1.0",
      "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
      "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
      "openai/clip-vit-base-patch32",
      "openai/clip-vit-base-patch16",
  };
  return repos;
}

std::string find_clip_vocab(const std::vector<std::string>& first, const std::vector<std::string>& model_folders,
                            std::vector<std::string>* looked_in) {
  auto look = [&](const fs::path& d) {
    if (looked_in) looked_in->push_back(d.string());
    return has_vocab(d);
  };
  for (const auto& d : first)
    if (!d.empty() && look(d)) return d;
  std::error_code ec;
  for (const auto& folder : model_folders) {
    if (folder.empty() || !fs::is_directory(folder, ec)) continue;
    if (looked_in) looked_in->push_back(folder + " (diffusers folders in it)");
    for (const auto& e : fs::directory_iterator(folder, ec)) {
      const fs::path t = e.path() / "tokenizer";
      if (e.is_directory(ec) && fs::exists(e.path() / "model_index.json", ec) && has_vocab(t)) return t.string();
    }
  }
  if (const auto own = clip_vocab_cache_dir(); !own.empty() && look(own)) return own;
  const std::string cache = io::hf_hub_cache_dir();
  if (cache.empty()) return "";
  if (looked_in) looked_in->push_back(cache + " (Hugging Face cache)");
  for (const auto& repo : clip_vocab_repos())
    for (const auto& snap : io::hf_cached_snapshots(repo, cache)) {
      if (has_vocab(snap)) return snap;
      if (has_vocab(fs::path(snap) / "tokenizer")) return (fs::path(snap) / "tokenizer").string();
    }
  for (const auto& snap : io::hf_all_cached_snapshots(cache))
    if (fs::exists(fs::path(snap) / "model_index.json", ec) && has_vocab(fs::path(snap) / "tokenizer"))
      return (fs::path(snap) / "tokenizer").string();
  return "";
}

std::string clip_vocab_hint() {
  const std::string own = clip_vocab_cache_dir();
  return "put the CLIP tokenizer's vocab.json and merges.txt (the same for SD 1.x and 2.x; e.g. from "
         "https://huggingface.co/openai/clip-vit-large-patch14, or the tokenizer/ folder of any Stable Diffusion "
         "diffusers repository) into " +
         (own.empty() ? std::string("~/.local/share/loupe/tokenizers/clip") : own) +
         ", or fetch them into the Hugging Face cache once with "
         "'huggingface-cli download openai/clip-vit-large-patch14 vocab.json merges.txt', or keep a Stable "
         "Diffusion diffusers folder in the models folder";
}

const char* clip_vocab_fetch_repo() { return "openai/clip-vit-large-patch14"; }

std::string fetch_clip_vocab() {
  std::string which;
  if (hub::offline(&which))
    LOUPE_THROW(NotFound, "offline mode is on (" << which << "), so the CLIP tokenizer was not fetched from "
                                                 << clip_vocab_fetch_repo());
  const std::string dest = clip_vocab_cache_dir();
  if (dest.empty()) LOUPE_THROW(NotFound, "no data folder to keep a fetched CLIP tokenizer in (HOME and XDG_DATA_HOME are unset)");
  hub::DownloadSpec spec;
  spec.endpoint = hub::endpoint();
  spec.token = hub::token();
  spec.repo = clip_vocab_fetch_repo();
  spec.dest = dest;
  spec.files = {"vocab.json", "merges.txt"};
  JobContext ctx(nullptr);
  try {
    hub::download(spec, ctx);
  } catch (const std::exception& e) {
    LOUPE_THROW(NotFound, "fetching the CLIP tokenizer (vocab.json, merges.txt) from " << spec.endpoint << "/"
                                                                                   << spec.repo << " failed: " << e.what());
  }
  if (!has_vocab(dest)) LOUPE_THROW(Internal, "the CLIP tokenizer was fetched but " << dest << " lacks vocab.json or merges.txt");
  return dest;
}

}  // namespace loupe::clip
