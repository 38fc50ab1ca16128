#include "io/config.h"

#include <fstream>
#include <sstream>

namespace loupe::io {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) LOUPE_THROW(NotFound, path << ": file does not exist or cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  const auto j = parse_json(ss.str(), path);
  if (!j.is_object()) LOUPE_THROW(BadModel, path << ": expected a JSON object, found " << j.type_name());
  return j;
}

}  // namespace loupe::io
