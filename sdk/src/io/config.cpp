#include "io/config.h"

#include <fstream>
#include <sstream>

namespace loupe::io {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) LOUPE_THROW(NotFound, path << ": file does not exist or cannot be read");
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    LOUPE_THROW(BadModel, path << ": not valid JSON at byte " << e.byte << " (" << e.what() << ")");
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    LOUPE_THROW(BadModel, path << ": not valid JSON (" << e.what() << ")");
  }
  if (!j.is_object()) LOUPE_THROW(BadModel, path << ": expected a JSON object, found " << j.type_name());
  return j;
}

}  // namespace loupe::io
