#include "io/convert.h"

#include <filesystem>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace loupe {

void convert_checkpoint(const std::string& in_path, const std::string& out_path) {
  if (fs::exists(out_path)) LOUPE_THROW(InvalidArgument, out_path << " already exists: not overwritten");
  const auto ckpt = io::Checkpoint::open(in_path);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& n : ckpt.names()) tensors.emplace_back(n, ckpt.load(n));
  const std::string tmp = out_path + ".partial";
  try {
    io::save_safetensors(tmp, tensors, {{"format", "pt"}, {"converted_by", "loupe " LOUPE_VERSION_STRING}});
    fs::rename(tmp, out_path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace loupe
