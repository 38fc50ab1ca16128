#include "schedulers/scheduler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "io/config.h"

namespace loupe::schedulers {

SchedulerConfig SchedulerConfig::from_json(const nlohmann::json& j, const std::string& file) {
  SchedulerConfig c;
  c.num_train_timesteps = io::get_in(j, "num_train_timesteps", c.num_train_timesteps, file, 2, 1 << 20);
  c.beta_start = io::get_in(j, "beta_start", c.beta_start, file, 0, 1);
  c.beta_end = io::get_in(j, "beta_end", c.beta_end, file, 0, 1);
  c.beta_schedule = io::get_or(j, "beta_schedule", c.beta_schedule, file);
  c.prediction_type = io::get_or(j, "prediction_type", c.prediction_type, file);
  c.timestep_spacing = io::get_or(j, "timestep_spacing", c.timestep_spacing, file);
  c.steps_offset = io::get_in(j, "steps_offset", c.steps_offset, file, 0, 1 << 20);
  c.set_alpha_to_one = io::get_or(j, "set_alpha_to_one", c.set_alpha_to_one, file);
  if (c.beta_schedule != "scaled_linear" && c.beta_schedule != "linear")
    LOUPE_THROW(Unsupported, file << ": beta_schedule '" << c.beta_schedule << "' (supported: scaled_linear, linear)");
  if (c.prediction_type != "epsilon" && c.prediction_type != "v_prediction")
    LOUPE_THROW(Unsupported, file << ": prediction_type '" << c.prediction_type << "' (supported: epsilon, v_prediction)");
  if (c.timestep_spacing != "leading" && c.timestep_spacing != "linspace" && c.timestep_spacing != "trailing")
    LOUPE_THROW(Unsupported, file << ": timestep_spacing '" << c.timestep_spacing << "'");
  if (c.num_train_timesteps < 2) LOUPE_THROW(BadModel, file << ": num_train_timesteps " << c.num_train_timesteps);
  return c;
}

Scheduler::Scheduler(SchedulerConfig c) : cfg_(std::move(c)) {
  const int T = cfg_.num_train_timesteps;
  double prod = 1.0;
  for (int t = 0; t < T; ++t) {
    double beta;
    if (cfg_.beta_schedule == "linear") {
      beta = cfg_.beta_start + (cfg_.beta_end - cfg_.beta_start) * t / (T - 1);
    } else {  // scaled_linear: linear in sqrt(beta)
      const double a = std::sqrt(cfg_.beta_start), b = std::sqrt(cfg_.beta_end);
      const double s = a + (b - a) * t / (T - 1);
      beta = s * s;
    }
    prod *= 1.0 - beta;
    alphas_cumprod_.push_back(prod);
  }
}

std::vector<double> Scheduler::spaced_timesteps(int steps) const {
  const int T = cfg_.num_train_timesteps;
  if (steps < 1 || steps > T)
    LOUPE_THROW(InvalidArgument, "steps = " << steps << " is out of range [1, " << T << "]");
  std::vector<double> ts;
  if (cfg_.timestep_spacing == "linspace") {
    for (int i = 0; i < steps; ++i) ts.push_back(steps == 1 ? 0.0 : (T - 1) * double(i) / (steps - 1));
    std::reverse(ts.begin(), ts.end());
  } else if (cfg_.timestep_spacing == "leading") {
    const int ratio = T / steps;
    for (int i = steps - 1; i >= 0; --i) ts.push_back(double(i * ratio + cfg_.steps_offset));
  } else {  // trailing
    const double ratio = double(T) / steps;
    for (int i = 0; i < steps; ++i) ts.push_back(std::round(T - i * ratio) - 1);
  }
  return ts;
}

torch::Tensor Scheduler::add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t i) const {
  // sigma-space schedulers (Euler family): x + sigma * noise
  return original + noise * sigmas_.at(i);
}

namespace {

// sigma(t) = sqrt((1 - a_t) / a_t), linearly interpolated between integer timesteps.
double sigma_at(const std::vector<double>& ac, double t) {
  const int lo = static_cast<int>(std::floor(t));
  const int hi = std::min(lo + 1, static_cast<int>(ac.size()) - 1);
  auto s = [&](int i) { return std::sqrt((1 - ac[i]) / ac[i]); };
  const double w = t - lo;
  return s(lo) * (1 - w) + s(hi) * w;
}

class EulerBase : public Scheduler {
 public:
  using Scheduler::Scheduler;
  void set_timesteps(int steps) override {
    timesteps_ = spaced_timesteps(steps);
    sigmas_.clear();
    for (double t : timesteps_) sigmas_.push_back(sigma_at(alphas_cumprod_, t));
    sigmas_.push_back(0.0);
  }
  double init_noise_sigma() const override {
    const double m = *std::max_element(sigmas_.begin(), sigmas_.end());
    return cfg_.timestep_spacing == "leading" ? std::sqrt(m * m + 1) : m;
  }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t i) const override {
    return sample / std::sqrt(sigmas_.at(i) * sigmas_.at(i) + 1);
  }

 protected:
  torch::Tensor predict_x0(const torch::Tensor& out, const torch::Tensor& sample, double sigma) const {
    if (cfg_.prediction_type == "v_prediction")
      return out * (-sigma / std::sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1);
    return sample - sigma * out;
  }
};

class Euler : public EulerBase {
 public:
  using EulerBase::EulerBase;
  torch::Tensor step(const torch::Tensor& out, size_t i, const torch::Tensor& sample, at::Generator*) override {
    const double s = sigmas_.at(i), next = sigmas_.at(i + 1);
    const auto x0 = predict_x0(out, sample, s);
    const auto d = (sample - x0) / s;
    return sample + d * (next - s);
  }
};

class EulerAncestral : public EulerBase {
 public:
  using EulerBase::EulerBase;
  torch::Tensor step(const torch::Tensor& out, size_t i, const torch::Tensor& sample, at::Generator* gen) override {
    const double s = sigmas_.at(i), next = sigmas_.at(i + 1);
    const auto x0 = predict_x0(out, sample, s);
    const double up = std::sqrt(next * next * (s * s - next * next) / (s * s));
    const double down = std::sqrt(next * next - up * up);
    auto prev = sample + (sample - x0) / s * (down - s);
    if (up > 0) {
      auto noise = gen ? torch::randn(sample.sizes(), *gen, torch::kFloat32) : torch::randn(sample.sizes(), torch::kFloat32);
      prev = prev + noise.to(sample.device(), sample.scalar_type()) * up;
    }
    return prev;
  }
};

class Ddim : public Scheduler {
 public:
  using Scheduler::Scheduler;
  void set_timesteps(int steps) override {
    timesteps_ = spaced_timesteps(steps);
    ratio_ = cfg_.num_train_timesteps / steps;
    sigmas_.clear();
    for (double t : timesteps_) sigmas_.push_back(sigma_at(alphas_cumprod_, t));
    sigmas_.push_back(0.0);
  }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t) const override { return sample; }
  torch::Tensor add_noise(const torch::Tensor& x, const torch::Tensor& noise, size_t i) const override {
    const double a = alphas_cumprod_.at(static_cast<size_t>(timesteps_.at(i)));
    return x * std::sqrt(a) + noise * std::sqrt(1 - a);
  }
  torch::Tensor step(const torch::Tensor& out, size_t i, const torch::Tensor& sample, at::Generator*) override {
    const int t = static_cast<int>(timesteps_.at(i));
    const int prev_t = t - ratio_;
    const double a = alphas_cumprod_.at(t);
    const double a_prev = prev_t >= 0 ? alphas_cumprod_.at(prev_t) : (cfg_.set_alpha_to_one ? 1.0 : alphas_cumprod_.at(0));
    const double b = 1 - a;
    torch::Tensor x0, eps;
    if (cfg_.prediction_type == "v_prediction") {
      x0 = std::sqrt(a) * sample - std::sqrt(b) * out;
      eps = std::sqrt(a) * out + std::sqrt(b) * sample;
    } else {
      x0 = (sample - std::sqrt(b) * out) / std::sqrt(a);
      eps = out;
    }
    return std::sqrt(a_prev) * x0 + std::sqrt(1 - a_prev) * eps;  // eta = 0
  }

 private:
  int ratio_ = 1;
};

// DPM-Solver++ (2M): second-order multistep in the VP parameterisation, with Karras sigmas when
// asked (diffusers' DPMSolverMultistepScheduler, algorithm "dpmsolver++", midpoint, lower order at
// the first step and at the last step of short schedules, final sigma 0).
class DpmPP2M : public Scheduler {
 public:
  DpmPP2M(SchedulerConfig c, bool karras) : Scheduler(std::move(c)), karras_(karras) {}
  void set_timesteps(int steps) override {
    const int T = cfg_.num_train_timesteps;
    std::vector<double> all_sigmas, log_sigmas;
    for (double a : alphas_cumprod_) {
      all_sigmas.push_back(std::sqrt((1 - a) / a));
      log_sigmas.push_back(std::log(all_sigmas.back()));
    }
    sigmas_.clear();
    timesteps_.clear();
    if (karras_) {
      const double smin = all_sigmas.front(), smax = all_sigmas.back(), rho = 7.0;
      const double lo = std::pow(smin, 1 / rho), hi = std::pow(smax, 1 / rho);
      for (int i = 0; i < steps; ++i) {
        const double ramp = steps == 1 ? 0.0 : double(i) / (steps - 1);
        sigmas_.push_back(std::pow(hi + ramp * (lo - hi), rho));
      }
      for (double sg : sigmas_) timesteps_.push_back(std::round(sigma_to_t(sg, log_sigmas)));
    } else {
      // steps + 1 points, the last dropped (diffusers' spacing for this scheduler)
      std::vector<double> ts;
      if (cfg_.timestep_spacing == "leading") {
        const int ratio = T / (steps + 1);
        for (int i = steps; i >= 1; --i) ts.push_back(double(i * ratio + cfg_.steps_offset));
      } else if (cfg_.timestep_spacing == "trailing") {
        const double ratio = double(T) / steps;
        for (int i = 0; i < steps; ++i) ts.push_back(std::round(T - i * ratio) - 1);
      } else {
        for (int i = steps; i >= 1; --i) ts.push_back(std::round((T - 1) * double(i) / steps));
      }
      timesteps_ = ts;
      for (double t : ts) sigmas_.push_back(sigma_at(alphas_cumprod_, t));
    }
    sigmas_.push_back(0.0);
    prev_x0_ = torch::Tensor();
    steps_ = steps;
  }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t) const override { return sample; }
  torch::Tensor add_noise(const torch::Tensor& x, const torch::Tensor& noise, size_t i) const override {
    const double sg = sigmas_.at(i), a = 1 / std::sqrt(sg * sg + 1);
    return x * a + noise * (sg * a);
  }
  torch::Tensor step(const torch::Tensor& out, size_t i, const torch::Tensor& sample, at::Generator*) override {
    auto alpha_sigma = [](double sg) { const double a = 1 / std::sqrt(sg * sg + 1); return std::make_pair(a, sg * a); };
    const auto [a_s, s_s] = alpha_sigma(sigmas_.at(i));
    const auto [a_t, s_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto x0 = cfg_.prediction_type == "v_prediction" ? a_s * sample - s_s * out : (sample - s_s * out) / a_s;
    const bool last = i + 1 == timesteps_.size();
    const bool first_order = !prev_x0_.defined() || (last && steps_ < 15);
    torch::Tensor next;
    if (s_t == 0.0) {
      next = x0;  // final sigma 0: the clean sample
    } else {
      const double lam_s = std::log(a_s) - std::log(s_s), lam_t = std::log(a_t) - std::log(s_t);
      const double h = lam_t - lam_s;
      const double phi = std::expm1(-h);  // exp(-h) - 1
      next = (s_t / s_s) * sample - a_t * phi * x0;
      if (!first_order) {
        const auto [a_p, s_p] = alpha_sigma(sigmas_.at(i - 1));
        const double lam_p = std::log(a_p) - std::log(s_p);
        const double r0 = (lam_s - lam_p) / h;
        next = next - 0.5 * a_t * phi * (x0 - prev_x0_) / r0;
      }
    }
    prev_x0_ = x0;
    return next;
  }

 private:
  static double sigma_to_t(double sigma, const std::vector<double>& log_sigmas) {
    const double ls = std::log(std::max(sigma, 1e-10));
    // log_sigmas increases with t: find the interval and interpolate linearly in log space
    size_t hi = std::upper_bound(log_sigmas.begin(), log_sigmas.end(), ls) - log_sigmas.begin();
    hi = std::clamp<size_t>(hi, 1, log_sigmas.size() - 1);
    const size_t lo = hi - 1;
    double w = (log_sigmas[lo] - ls) / (log_sigmas[lo] - log_sigmas[hi]);
    w = std::clamp(w, 0.0, 1.0);
    return (1 - w) * lo + w * hi;
  }
  bool karras_;
  int steps_ = 0;
  torch::Tensor prev_x0_;
};

}  // namespace

FlowMatchConfig FlowMatchConfig::from_json(const nlohmann::json& j, const std::string& file) {
  FlowMatchConfig c;
  const std::string cls = j.value("_class_name", std::string("FlowMatchEulerDiscreteScheduler"));
  if (cls != "FlowMatchEulerDiscreteScheduler")
    LOUPE_THROW(Unsupported, file << ": scheduler '" << cls << "' (FLUX runs FlowMatchEulerDiscreteScheduler)");
  c.num_train_timesteps = io::get_in(j, "num_train_timesteps", c.num_train_timesteps, file, 1, 1e6);
  c.shift = io::get_in(j, "shift", c.shift, file, 1e-6, 1e6);
  c.use_dynamic_shifting = io::get_or(j, "use_dynamic_shifting", c.use_dynamic_shifting, file);
  c.base_shift = io::get_in(j, "base_shift", c.base_shift, file, -100, 100);
  c.max_shift = io::get_in(j, "max_shift", c.max_shift, file, -100, 100);
  c.base_image_seq_len = io::get_in(j, "base_image_seq_len", c.base_image_seq_len, file, 1, 1e9);
  c.max_image_seq_len = io::get_in(j, "max_image_seq_len", c.max_image_seq_len, file, 1, 1e9);
  c.time_shift_type = io::get_or(j, "time_shift_type", c.time_shift_type, file);
  if (c.time_shift_type != "exponential" && c.time_shift_type != "linear")
    LOUPE_THROW(BadModel, file << ": time_shift_type '" << c.time_shift_type << "' (exponential or linear)");
  if (c.max_image_seq_len == c.base_image_seq_len)
    LOUPE_THROW(BadModel, file << ": base_image_seq_len and max_image_seq_len are both " << c.max_image_seq_len);
  // options that change the schedule and that FLUX.1's configs do not use
  for (const char* k : {"invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                        "stochastic_sampling"})
    if (io::get_or(j, k, false, file)) LOUPE_THROW(Unsupported, file << ": \"" << k << "\": true is not supported");
  if (io::get_or(j, "shift_terminal", 0.0, file) != 0.0)
    LOUPE_THROW(Unsupported, file << ": \"shift_terminal\" is not supported");
  return c;
}

double calculate_shift(int64_t image_seq_len, const FlowMatchConfig& c) {
  const double m = (c.max_shift - c.base_shift) / double(c.max_image_seq_len - c.base_image_seq_len);
  const double b = c.base_shift - m * c.base_image_seq_len;
  return double(image_seq_len) * m + b;
}

FlowMatchEuler::FlowMatchEuler(FlowMatchConfig c) : Scheduler(SchedulerConfig{}), fcfg_(std::move(c)) {
  cfg_.num_train_timesteps = fcfg_.num_train_timesteps;
  cfg_.prediction_type = "flow";
}

void FlowMatchEuler::set_timesteps(int steps) {
  if (steps < 1 || steps > 10000) LOUPE_THROW(InvalidArgument, "steps = " << steps << " is out of range [1, 10000]");
  if (fcfg_.use_dynamic_shifting && !has_mu_)
    LOUPE_THROW(Internal, "flow-matching Euler with use_dynamic_shifting needs mu (set_mu) before set_timesteps");
  const double T = fcfg_.num_train_timesteps;
  timesteps_.clear();
  sigmas_.clear();
  for (int i = 0; i < steps; ++i) {
    // FluxPipeline: np.linspace(1.0, 1 / steps, steps), then float32
    double s = steps == 1 ? 1.0 : 1.0 + (1.0 / steps - 1.0) * double(i) / (steps - 1);
    s = static_cast<float>(s);
    if (fcfg_.use_dynamic_shifting) {
      const double e = fcfg_.time_shift_type == "exponential" ? std::exp(mu_) : mu_;
      s = e / (e + (1.0 / s - 1.0));  // time_shift(mu, sigma = 1, t)
    } else {
      s = fcfg_.shift * s / (1.0 + (fcfg_.shift - 1.0) * s);
    }
    s = static_cast<float>(s);
    sigmas_.push_back(s);
    timesteps_.push_back(static_cast<float>(s * T));
  }
  sigmas_.push_back(0.0);
}

torch::Tensor FlowMatchEuler::step(const torch::Tensor& out, size_t i, const torch::Tensor& sample, at::Generator*) {
  const double dt = sigmas_.at(i + 1) - sigmas_.at(i);
  return sample + static_cast<float>(dt) * out;
}

torch::Tensor FlowMatchEuler::add_noise(const torch::Tensor& x, const torch::Tensor& noise, size_t i) const {
  const double s = sigmas_.at(i);
  return noise * s + x * (1.0 - s);
}

size_t FlowMatchEuler::start_index(int steps, double strength) {
  const double init = std::min(steps * strength, double(steps));
  return static_cast<size_t>(std::max(double(steps) - init, 0.0));
}

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = {"euler_a", "euler", "ddim", "dpmpp_2m", "dpmpp_2m_karras"};
  return n;
}

std::unique_ptr<Scheduler> make(const std::string& name, const SchedulerConfig& c) {
  if (name == "euler") return std::make_unique<Euler>(c);
  if (name == "euler_a") return std::make_unique<EulerAncestral>(c);
  if (name == "ddim") return std::make_unique<Ddim>(c);
  if (name == "dpmpp_2m") return std::make_unique<DpmPP2M>(c, false);
  if (name == "dpmpp_2m_karras") return std::make_unique<DpmPP2M>(c, true);
  std::string known;
  for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
  LOUPE_THROW(InvalidArgument, "unknown sampler '" << name << "' (known: " << known << ")");
}

}  // namespace loupe::schedulers
