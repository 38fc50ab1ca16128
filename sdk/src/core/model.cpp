#include "core/model.h"

namespace loupe {

Result Model::run(const Request& request, JobContext& ctx) {
  const auto offered = tasks();
  for (const auto& t : offered) {
    if (t.name != request.task) continue;
    Request resolved = request;
    tasks::resolve(t, resolved);
    return run_task(resolved, ctx);
  }
  std::string list;
  for (const auto& t : offered) list += " " + t.name;
  LOUPE_THROW(InvalidArgument, "task '" << request.task << "' is not offered by " << variant() << "; it offers:" << list);
}

void Model::set_lora(const std::string& path, float) {
  LOUPE_THROW(Unsupported, variant() << " does not take LoRA files ('" << path << "')");
}

void Model::set_vae(const std::string& path) {
  LOUPE_THROW(Unsupported, variant() << " does not take an external VAE ('" << path << "')");
}

}  // namespace loupe
