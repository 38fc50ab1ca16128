// Where the CLIP BPE vocabulary (vocab.json + merges.txt) comes from when a checkpoint has none
// (single-file Stable Diffusion checkpoints): SD 1.x's CLIP and SD 2.x's OpenCLIP use the same
// vocabulary, so any copy will do. Cheap: looks at files only.
#pragma once
#include <string>
#include <vector>

namespace loupe::clip {

// Loupe's own copy: <loupe data dir>/tokenizers/clip (vocab.json, merges.txt). The downloads put
// it there; users may too.
std::string clip_vocab_cache_dir();

// The Hugging Face repositories whose cached snapshots are tried, in order (root or tokenizer/).
const std::vector<std::string>& clip_vocab_repos();

// The first folder holding vocab.json and merges.txt, looking in: `first` (in order, e.g. a
// sidecar's tokenizer/), the tokenizer/ of any diffusers folder (model_index.json) inside each of
// `model_folders`, Loupe's copy, then the Hugging Face cache (clip_vocab_repos(), then any cached
// diffusers pipeline). Returns "" when none is found; `looked_in` (may be NULL) gets the places.
std::string find_clip_vocab(const std::vector<std::string>& first, const std::vector<std::string>& model_folders,
                            std::vector<std::string>* looked_in = nullptr);

// What to do when find_clip_vocab found nothing: which files, where to put them, or what to fetch.
std::string clip_vocab_hint();

// The repository a missing vocabulary is fetched from (openai/clip-vit-large-patch14: vocab.json and
// merges.txt, a few MB, the same for SD 1.x, 2.x and SDXL).
const char* clip_vocab_fetch_repo();

// Fetches the vocabulary once into Loupe's copy (clip_vocab_cache_dir()) through the hub's verified,
// atomic downloads (HF_ENDPOINT and HF_TOKEN honoured) and returns that folder. Refuses in offline
// mode (HF_HUB_OFFLINE / LOUPE_OFFLINE) and when there is no data folder. Throws with the reason
// (offline, the URL that failed and why); never leaves half-written files.
std::string fetch_clip_vocab();

}  // namespace loupe::clip
