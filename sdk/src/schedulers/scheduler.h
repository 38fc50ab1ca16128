// Diffusion schedulers with diffusers' semantics (scheduler_config.json keys and defaults):
// Euler, Euler ancestral, DDIM, DPM++ 2M (optionally with Karras sigmas), and flow-matching Euler (FLUX). A scheduler knows no model: it turns the model output at each
// timestep into the next sample. Tensors are float32 on any device; tables are computed in double.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace loupe::schedulers {

struct SchedulerConfig {
  int num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // or "linear"
  std::string prediction_type = "epsilon";      // or "v_prediction"
  std::string timestep_spacing = "leading";     // "linspace", "leading", "trailing"
  int steps_offset = 1;
  bool set_alpha_to_one = false;                // DDIM
  static SchedulerConfig from_json(const nlohmann::json& j, const std::string& file);
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig c);
  virtual ~Scheduler() = default;
  virtual void set_timesteps(int steps) = 0;
  const std::vector<double>& timesteps() const { return timesteps_; }
  virtual double init_noise_sigma() const = 0;
  // The model input for timestep index i (sigma scaling for the Euler family).
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, size_t i) const = 0;
  // The next sample from the model output at step i. `gen` feeds ancestral noise (CPU generator).
  virtual torch::Tensor step(const torch::Tensor& model_output, size_t i, const torch::Tensor& sample,
                             at::Generator* gen) = 0;
  // Noises a clean sample to the noise level of step i (img2img start, inpainting's latent blend),
  // as the matching diffusers scheduler's add_noise does.
  virtual torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t i) const;
  const SchedulerConfig& config() const { return cfg_; }
  // The noise level of step i in the Euler/k-diffusion sense (sqrt((1 - a) / a)).
  virtual double sigma(size_t i) const { return sigmas_.at(i); }
  const std::vector<double>& alphas_cumprod() const { return alphas_cumprod_; }

 protected:
  std::vector<double> spaced_timesteps(int steps) const;
  SchedulerConfig cfg_;
  std::vector<double> alphas_cumprod_;
  std::vector<double> timesteps_;
  std::vector<double> sigmas_;  // per step, plus the final 0
};

// diffusers' FlowMatchEulerDiscreteScheduler config (FLUX.1's scheduler/scheduler_config.json).
struct FlowMatchConfig {
  int num_train_timesteps = 1000;
  double shift = 1.0;
  bool use_dynamic_shifting = false;
  double base_shift = 0.5, max_shift = 1.15;
  int base_image_seq_len = 256, max_image_seq_len = 4096;
  std::string time_shift_type = "exponential";  // or "linear"
  static FlowMatchConfig from_json(const nlohmann::json& j, const std::string& file);
};

// FluxPipeline's calculate_shift: mu for an image of `image_seq_len` packed latents, from the
// config's base/max shift and sequence lengths.
double calculate_shift(int64_t image_seq_len, const FlowMatchConfig& c);

// Flow-matching Euler (diffusers' FlowMatchEulerDiscreteScheduler as FluxPipeline drives it): the
// sigmas linspace(1, 1/steps, steps), shifted statically (`shift`) or, with use_dynamic_shifting,
// by the resolution's mu (set_mu before set_timesteps); timesteps = sigmas * num_train_timesteps; a
// final sigma 0. The model predicts the velocity; step is x + (sigma_next - sigma) * v; add_noise is
// scale_noise: sigma * noise + (1 - sigma) * x. The base class's alphas_cumprod are not used.
class FlowMatchEuler : public Scheduler {
 public:
  explicit FlowMatchEuler(FlowMatchConfig c);
  void set_mu(double mu) { mu_ = mu; has_mu_ = true; }
  void set_timesteps(int steps) override;
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, size_t) const override { return sample; }
  torch::Tensor step(const torch::Tensor& model_output, size_t i, const torch::Tensor& sample, at::Generator*) override;
  torch::Tensor add_noise(const torch::Tensor& original, const torch::Tensor& noise, size_t i) const override;
  const FlowMatchConfig& flow_config() const { return fcfg_; }
  // img2img / inpainting: the first step for a strength (diffusers' get_timesteps).
  static size_t start_index(int steps, double strength);

 private:
  FlowMatchConfig fcfg_;
  double mu_ = 0.0;
  bool has_mu_ = false;
};

// The samplers by name, in the order hosts list them (the task table's "sampler" choices).
const std::vector<std::string>& names();
// One of names(); InvalidArgument otherwise.
std::unique_ptr<Scheduler> make(const std::string& name, const SchedulerConfig& c);

}  // namespace loupe::schedulers
