// Where files already on this machine live: the Hugging Face hub cache (models--ORG--NAME/
// snapshots/REV/..., files there are symlinks into blobs/) and Loupe's own data folder. Reading
// only: nothing here downloads or writes.
#pragma once
#include <string>
#include <vector>

namespace loupe::io {

// The hub cache, as huggingface_hub resolves it: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub,
// $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub (the first one set; it may not exist).
std::string hf_hub_cache_dir();

// The snapshot folders of a model repository ("org/name") in `cache_dir`: the one refs/main names
// first, then the others (newest first). Empty when the repository is not cached.
std::vector<std::string> hf_cached_snapshots(const std::string& repo_id, const std::string& cache_dir);

// The snapshot folders of every cached model repository (refs/main's first within a repository).
std::vector<std::string> hf_all_cached_snapshots(const std::string& cache_dir);

// Loupe's data folder: $XDG_DATA_HOME/loupe, else ~/.local/share/loupe (it may not exist).
std::string loupe_data_dir();

}  // namespace loupe::io
