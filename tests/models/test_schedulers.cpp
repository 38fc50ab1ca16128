// Schedulers: properties of the timestep tables and exactness on an ideal denoiser, for epsilon
// and v prediction. (Parity tables from diffusers itself are still to come: they need diffusers,
// which runs only on the GPU machine's Python.)
#include <gtest/gtest.h>

#include "core/error.h"
#include "schedulers/scheduler.h"

using namespace loupe;
using namespace loupe::schedulers;

static SchedulerConfig sd15() { return SchedulerConfig{}; }  // the SD 1.5 scheduler_config defaults

TEST(Schedulers, LeadingSpacingFollowsTheRule) {
  auto s = make("euler", sd15());
  s->set_timesteps(30);
  const auto& t = s->timesteps();
  ASSERT_EQ(t.size(), 30u);
  EXPECT_EQ(t.back(), 1);                   // steps_offset
  for (size_t i = 1; i < t.size(); ++i) EXPECT_EQ(t[i - 1] - t[i], 1000 / 30);
  // leading spacing: the initial noise is sqrt(sigma(t_first)^2 + 1), sigma(t) = sqrt((1 - a_t) / a_t)
  const double a = s->alphas_cumprod()[static_cast<int>(t.front())];
  EXPECT_NEAR(s->init_noise_sigma(), std::sqrt((1 - a) / a + 1), 1e-9);
  SchedulerConfig tr = sd15();
  tr.timestep_spacing = "trailing";
  auto s2 = make("euler", tr);
  s2->set_timesteps(4);
  EXPECT_EQ(s2->timesteps().front(), 999);  // trailing spacing starts at the last training step
  EXPECT_THROW(s2->set_timesteps(0), Error);
}

static void ideal_run(const std::string& name, const std::string& prediction) {
  SchedulerConfig c = sd15();
  c.prediction_type = prediction;
  c.set_alpha_to_one = true;
  auto s = make(name, c);
  s->set_timesteps(8);
  torch::manual_seed(3);
  const auto x0 = torch::randn({1, 4, 8, 8});
  const auto eps = torch::randn({1, 4, 8, 8});
  const auto& ac = s->alphas_cumprod();
  const bool ddim = name == "ddim" || name.rfind("dpmpp", 0) == 0;  // VP samples
  // start at the first timestep's noise level
  const double t0 = s->timesteps()[0];
  const double a0 = ac[static_cast<int>(t0)];
  // DDIM: x_t = sqrt(a) x0 + sqrt(1 - a) eps; the Euler family works on x = x0 + sigma eps
  torch::Tensor x = ddim ? std::sqrt(a0) * x0 + std::sqrt(1 - a0) * eps : x0 + std::sqrt((1 - a0) / a0) * eps;
  auto gen = at::detail::createCPUGenerator(42);
  for (size_t i = 0; i < s->timesteps().size(); ++i) {
    const double t = s->timesteps()[i];
    double a = ac[static_cast<int>(t)];
    if (name == "dpmpp_2m_karras") {  // Karras sigmas sit between training steps: use the sigma itself
      const double sg = s->sigma(i);
      a = 1 / (sg * sg + 1);
      if (i == 0) x = std::sqrt(a) * x0 + std::sqrt(1 - a) * eps;
    }
    // the ideal model output for this noise level
    torch::Tensor out = eps;
    if (prediction == "v_prediction") out = std::sqrt(a) * eps - std::sqrt(1 - a) * x0;
    x = s->step(out, i, x, &gen);
    if (name == "euler_a") break;  // ancestral noise changes eps after the first step
  }
  if (name != "euler_a") EXPECT_TRUE(torch::allclose(x, x0, 1e-4, 1e-4)) << name << " " << prediction;  // fp32
}

TEST(Schedulers, IdealDenoiserEndsAtTheCleanSample) {
  for (const char* p : {"epsilon", "v_prediction"})
    for (const char* n : {"euler", "ddim", "dpmpp_2m", "dpmpp_2m_karras"}) ideal_run(n, p);
}

TEST(Schedulers, AncestralNoiseComesFromTheSeededGenerator) {
  auto run = [](uint64_t seed) {
    auto s = make("euler_a", sd15());
    s->set_timesteps(5);
    auto gen = at::detail::createCPUGenerator(seed);
    auto x = torch::ones({1, 4, 4, 4}) * 3;
    for (size_t i = 0; i < 5; ++i) x = s->step(torch::zeros_like(x), i, x, &gen);
    return x;
  };
  EXPECT_TRUE(run(7).equal(run(7)));
  EXPECT_FALSE(run(7).equal(run(8)));
}

TEST(Schedulers, UnknownSamplerAndBadConfigAreErrors) {
  try {
    make("plms", sd15());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("known: euler_a, euler, ddim, dpmpp_2m"), std::string::npos);
  }
  EXPECT_THROW(SchedulerConfig::from_json({{"prediction_type", "sample"}}, "scheduler_config.json"), Error);
  EXPECT_THROW(SchedulerConfig::from_json({{"beta_schedule", "squaredcos_cap_v2"}}, "scheduler_config.json"), Error);
}
