// The model families compiled into libloupe, in detection order, plus any registered at run time.
#include <mutex>

#include "core/model.h"
#include "families/blip2.h"
#include "families/florence2.h"
#include "families/flux.h"
#include "families/paligemma.h"
#include "families/sd.h"
#include "families/sdxl.h"

namespace loupe {

namespace {
std::mutex g_mu;
std::vector<ModelFamily>& registered() {
  static std::vector<ModelFamily> r;
  return r;
}
std::vector<ModelFamily> builtin() {
  std::vector<ModelFamily> f;
  f.push_back(florence2::family());
  f.push_back(paligemma::family());
  f.push_back(blip2::family());
  f.push_back(sd::family());
  f.push_back(sdxl::family());
  f.push_back(flux_family::family());
  return f;
}
}  // namespace

std::vector<ModelFamily> model_families() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<ModelFamily> all = registered();
  static const std::vector<ModelFamily> built = builtin();
  all.insert(all.end(), built.begin(), built.end());
  return all;
}

void register_model_family(ModelFamily family) {
  std::lock_guard<std::mutex> lock(g_mu);
  registered().push_back(std::move(family));
}

}  // namespace loupe
