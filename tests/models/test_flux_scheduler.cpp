// Flow-matching Euler (FLUX.1) against diffusers' FlowMatchEulerDiscreteScheduler as FluxPipeline and
// FluxImg2ImgPipeline drive it: tests/fixtures/flux/pipeline/scheduler.json, written by
// tests/fixtures/gen/make_flux_scheduler.py running diffusers.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "schedulers/scheduler.h"

using namespace loupe;
using namespace loupe::schedulers;

namespace {

nlohmann::json fixture() {
  const std::string path = std::string(LOUPE_FIXTURES_DIR) + "/flux/pipeline/scheduler.json";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("missing fixture " + path);
  return nlohmann::json::parse(f);
}

torch::Tensor tensor2d(const nlohmann::json& j) {
  std::vector<float> v;
  for (const auto& row : j)
    for (const auto& x : row) v.push_back(x.get<float>());
  return torch::tensor(v).view({static_cast<int64_t>(j.size()), -1});
}

// The scheduler for a case as the pipeline sets it up.
std::unique_ptr<FlowMatchEuler> scheduler_for(const nlohmann::json& c) {
  auto cfg = FlowMatchConfig::from_json(c["config"], "scheduler_config.json");
  auto s = std::make_unique<FlowMatchEuler>(cfg);
  s->set_mu(calculate_shift(c["image_seq_len"].get<int64_t>(), cfg));
  s->set_timesteps(c["steps"].get<int>());
  return s;
}

}  // namespace

TEST(FluxScheduler, SigmasAndTimestepsMatchDiffusers) {
  const auto j = fixture();
  ASSERT_GE(j["cases"].size(), 7u);
  for (const auto& c : j["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto cfg = FlowMatchConfig::from_json(c["config"], "scheduler_config.json");
    // FluxPipeline's image_seq_len (packed latents) and mu
    const int64_t seq = (c["height"].get<int64_t>() / 16) * (c["width"].get<int64_t>() / 16);
    EXPECT_EQ(seq, c["image_seq_len"].get<int64_t>());
    EXPECT_NEAR(calculate_shift(seq, cfg), c["mu"].get<double>(), 1e-12);
    auto s = scheduler_for(c);
    const auto sig = c["sigmas"].get<std::vector<double>>();
    ASSERT_EQ(s->timesteps().size() + 1, sig.size());
    for (size_t i = 0; i < sig.size(); ++i) EXPECT_NEAR(s->sigma(i), sig[i], 2e-7) << "sigma " << i;
    const size_t start = FlowMatchEuler::start_index(c["steps"].get<int>(), c["strength"].get<double>());
    EXPECT_EQ(start, c["begin_index"].get<size_t>());
    const auto ts = c["timesteps"].get<std::vector<double>>();
    ASSERT_EQ(s->timesteps().size() - start, ts.size());
    for (size_t i = 0; i < ts.size(); ++i) EXPECT_NEAR(s->timesteps()[start + i], ts[i], 1e-4) << "timestep " << i;
  }
}

TEST(FluxScheduler, StepAndScaleNoiseMatchDiffusers) {
  const auto j = fixture();
  auto find = [&](const std::string& name) {
    for (const auto& c : j["cases"])
      if (c["name"] == name) return c;
    throw std::runtime_error("no case " + name);
  };
  {
    const auto& sn = j["scale_noise"];
    const auto c = find(sn["case"]);
    auto s = scheduler_for(c);
    const size_t start = FlowMatchEuler::start_index(c["steps"].get<int>(), c["strength"].get<double>());
    const auto out = s->add_noise(tensor2d(sn["sample"]), tensor2d(sn["noise"]), start);
    EXPECT_TRUE(torch::allclose(out, tensor2d(sn["out"]), 1e-6, 1e-6)) << out;
  }
  {
    const auto& st = j["step"];
    auto s = scheduler_for(find(st["case"]));
    auto x = tensor2d(st["sample"]);
    const auto v = tensor2d(st["model_output"]);
    for (int i = 0; i < st["steps_taken"].get<int>(); ++i) x = s->step(v, static_cast<size_t>(i), x, nullptr);
    EXPECT_TRUE(torch::allclose(x, tensor2d(st["out"]), 1e-6, 1e-6)) << x;
  }
}

TEST(FluxScheduler, BadConfigsAreClearErrors) {
  nlohmann::json j = {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"use_karras_sigmas", true}};
  EXPECT_THROW(FlowMatchConfig::from_json(j, "s.json"), Error);
  j = {{"_class_name", "EulerDiscreteScheduler"}};
  EXPECT_THROW(FlowMatchConfig::from_json(j, "s.json"), Error);
  j = {{"shift", -1.0}};
  EXPECT_THROW(FlowMatchConfig::from_json(j, "s.json"), Error);
  j = {{"time_shift_type", "cubic"}};
  EXPECT_THROW(FlowMatchConfig::from_json(j, "s.json"), Error);
  FlowMatchConfig dyn;
  dyn.use_dynamic_shifting = true;
  FlowMatchEuler s(dyn);
  EXPECT_THROW(s.set_timesteps(4), Error);  // mu is needed first
  s.set_mu(1.0);
  EXPECT_THROW(s.set_timesteps(0), Error);
  s.set_timesteps(4);
  EXPECT_EQ(s.sigma(4), 0.0);
  EXPECT_EQ(s.init_noise_sigma(), 1.0);
}
