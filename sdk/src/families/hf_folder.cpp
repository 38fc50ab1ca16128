#include "families/hf_folder.h"

#include <filesystem>

#include "core/error.h"
#include "io/config.h"

namespace loupe::families {

std::function<std::string(const std::string&)> detect_by_model_type(std::string model_type, std::string fallback,
                                                                     std::function<std::string(const std::string&)> variant) {
  return [model_type = std::move(model_type), fallback = std::move(fallback),
          variant = std::move(variant)](const std::string& path) -> std::string {
    namespace fs = std::filesystem;
    const fs::path cfg = fs::path(path) / "config.json";
    if (!fs::is_directory(path) || !fs::exists(cfg)) return "";
    if (io::read_json_file(cfg.string()).value("model_type", "") != model_type) return "";
    try {
      return variant(path);
    } catch (const Error&) {
      return fallback;
    }
  };
}

}  // namespace loupe::families
