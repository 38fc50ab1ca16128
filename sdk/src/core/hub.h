// A Hugging Face-style hub: which endpoint and token to use, the offline switch (read from the
// environment as huggingface_hub reads it; where its cache is: io/hf_cache.h), and downloads of repo files
// that are resumable (HTTP Range on "<file>.part"), verified (sha256 from the catalog, else the LFS
// sha256 the hub sends as X-Linked-Etag / ETag) and atomic (a file appears under its name only when
// it is complete and verified). Downloads run as runtime jobs (task "download"), libcurl underneath.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/job.h"
#include "core/types.h"

namespace loupe::hub {

// HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
std::string hf_home();
// HF_ENDPOINT without a trailing '/', else https://huggingface.co.
std::string endpoint();
// HF_TOKEN, else the token file (HF_TOKEN_PATH, else HF_HOME/token); "" when there is none.
std::string token();
// True when HF_HUB_OFFLINE or LOUPE_OFFLINE is 1/true/yes/on; *which names the variable.
bool offline(std::string* which = nullptr);
// {endpoint}/{repo}/resolve/{revision}/{file}, each part percent-encoded ('/' kept in repo and file).
std::string file_url(const std::string& endpoint, const std::string& repo, const std::string& revision,
                     const std::string& file);

struct DownloadSpec {
  std::string endpoint;
  std::string token;
  std::string repo;
  std::string revision = "main";
  std::string dest;                          // the folder the files go to (made if missing)
  std::vector<std::string> files;            // "a|b" = the first the repo has, "?x" = x if present
  std::map<std::string, std::string> sha256; // file -> lowercase hex (the catalog's)
  std::string catalog_id;                    // for messages and the result
};

// The spec of a "download" request: string parameters "catalog_id" (an entry of the catalog) or
// "repo" + "files" (comma-separated), and optional "revision", "dest" (default: the models folder /
// the entry's folder, or the repo's name), "endpoint" (default HF_ENDPOINT), "catalog" (a catalog
// file instead of the built-in one). Checks everything before any byte moves; refuses in offline
// mode. Errors are InvalidArgument / NotFound / Unsupported with what to do.
DownloadSpec download_spec(const Request& request, const std::string& models_dir);

// Runs a download (the job's work). Progress: step/total in KiB over all files, stage
// "download <file>". Cancel stops between chunks and keeps "<file>.part" for resuming. Result:
// text = the destination folder; numbers files, bytes, bytes_downloaded, verified; strings
// path, repo, revision.
std::unique_ptr<Result> download(const DownloadSpec& spec, JobContext& ctx);

}  // namespace loupe::hub
