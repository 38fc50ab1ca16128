// Binding a checkpoint to a module tree whose names mirror the Hugging Face parameter names:
// loading is a table lookup, and every mismatch is reported with the key and both shapes.
#pragma once
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "io/checkpoint.h"

namespace loupe::io {

// Ordered rename rules from module names to checkpoint names (another layout of the same model:
// original remote-code names, single-file checkpoints). The first matching rule applies.
class KeyMap {
 public:
  KeyMap& prefix(const std::string& from, const std::string& to);
  KeyMap& regex(const std::string& pattern, const std::string& replacement);
  // A computed rule: returns the checkpoint name, or "" when it does not apply.
  KeyMap& function(std::function<std::string(const std::string&)> fn);
  // A transform applied to the loaded tensor of matching module names (e.g. a transpose).
  KeyMap& transform(const std::string& pattern, std::function<torch::Tensor(const torch::Tensor&)> fn);
  std::string map(const std::string& module_name) const;
  torch::Tensor apply(const std::string& module_name, torch::Tensor t) const;
  bool has_transform(const std::string& module_name) const;
  bool empty() const { return rules_.empty() && transforms_.empty(); }

 private:
  struct Rule {
    bool is_prefix;
    std::string from;
    std::regex re;
    std::string to;
    std::function<std::string(const std::string&)> fn;
  };
  std::vector<Rule> rules_;
  std::vector<std::pair<std::regex, std::function<torch::Tensor(const torch::Tensor&)>>> transforms_;
};

struct ShapeMismatch {
  std::string name;
  std::vector<int64_t> expected;
  std::vector<int64_t> found;
};

struct BindReport {
  std::vector<std::string> missing;     // module tensors with no checkpoint tensor
  std::vector<std::string> unexpected;  // checkpoint tensors no module tensor asked for
  std::vector<ShapeMismatch> mismatched;
  // The key-prefix rule's finding, e.g. "without the prefix 'text_model.'" ("" when names matched).
  std::string prefix_rule;
  bool ok() const { return missing.empty() && mismatched.empty(); }
  std::string describe(const std::string& file, size_t max_each = 10) const;
};

struct BindOptions {
  bool strict = true;                // missing keys or shape mismatches throw BadModel
  bool report_unexpected = false;    // strict also fails on unexpected keys
  KeyMap keymap;
  torch::Device device = torch::kCPU;
  c10::optional<torch::ScalarType> dtype;  // floating tensors are converted to it
  // Checkpoint prefix: only names under it count as unexpected (e.g. "unet." in a single file).
  std::string scope;
  std::function<bool(const std::string&)> allow_missing;  // e.g. buffers computed at load
};

// The key-prefix rule (one rule for every family): a checkpoint may name the module's tensors with
// a leading prefix missing or extra, after `scope` (transformers 5 saves CLIPTextModel as
// "encoder.layers.0..." where the module says "text_model.encoder.layers.0..."; old SD 1.x single
// files have "cond_stage_model.transformer.embeddings..."; a bare base model has "x" for "model.x").
// When names (after the KeyMap) are not found, bind() looks for the one prefix, stripped or added,
// that finds the most of them, and uses it for those names only.

// Checks names and shapes from the checkpoint's headers only (no tensor is read). Throws BadModel
// (strict) with the file, keys and shapes; returns the report either way. Shapes of names with a
// KeyMap transform are checked when bind() loads them.
BindReport check(torch::nn::Module& module, const Checkpoint& ckpt, const BindOptions& options = {});

// check(), then loads every parameter and buffer of `module` from `ckpt`: nothing is read when the
// names or shapes do not fit. Throws BadModel (strict) with the file, keys and shapes; returns the
// report either way.
BindReport bind(torch::nn::Module& module, const Checkpoint& ckpt, const BindOptions& options = {});

}  // namespace loupe::io
