#include "io/state_dict.h"

#include <set>
#include <sstream>

#include "core/error.h"

namespace loupe::io {

KeyMap& KeyMap::prefix(const std::string& from, const std::string& to) {
  rules_.push_back({true, from, std::regex(), to});
  return *this;
}

KeyMap& KeyMap::regex(const std::string& pattern, const std::string& replacement) {
  rules_.push_back({false, pattern, std::regex(pattern), replacement});
  return *this;
}

KeyMap& KeyMap::function(std::function<std::string(const std::string&)> fn) {
  rules_.push_back({false, "", std::regex(), "", std::move(fn)});
  return *this;
}

KeyMap& KeyMap::transform(const std::string& pattern, std::function<torch::Tensor(const torch::Tensor&)> fn) {
  transforms_.emplace_back(std::regex(pattern), std::move(fn));
  return *this;
}

std::string KeyMap::map(const std::string& name) const {
  for (const auto& r : rules_) {
    if (r.fn) {
      std::string m = r.fn(name);
      if (!m.empty()) return m;
    } else if (r.is_prefix) {
      if (name.rfind(r.from, 0) == 0) return r.to + name.substr(r.from.size());
    } else if (std::regex_search(name, r.re)) {
      return std::regex_replace(name, r.re, r.to, std::regex_constants::format_first_only);
    }
  }
  return name;
}

torch::Tensor KeyMap::apply(const std::string& name, torch::Tensor t) const {
  for (const auto& [re, fn] : transforms_)
    if (std::regex_search(name, re)) return fn(t);
  return t;
}

std::string BindReport::describe(const std::string& file, size_t max_each) const {
  std::ostringstream os;
  os << file << ": the weights do not fit the model";
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    os << "; " << v.size() << " " << what << ":";
    for (size_t i = 0; i < v.size() && i < max_each; ++i) os << " '" << v[i] << "'";
    if (v.size() > max_each) os << " ...";
  };
  list("missing", missing);
  if (!mismatched.empty()) {
    os << "; " << mismatched.size() << " with another shape:";
    for (size_t i = 0; i < mismatched.size() && i < max_each; ++i)
      os << " '" << mismatched[i].name << "' model " << shape_str(mismatched[i].expected) << " vs file "
         << shape_str(mismatched[i].found);
    if (mismatched.size() > max_each) os << " ...";
  }
  list("unexpected", unexpected);
  os << "; hint: is this the right model family and variant for this folder?";
  return os.str();
}

BindReport bind(torch::nn::Module& module, const Checkpoint& ckpt, const BindOptions& o) {
  torch::NoGradGuard no_grad;
  BindReport report;
  std::set<std::string> used;
  auto bind_one = [&](const std::string& name, torch::Tensor& target) {
    const std::string key = o.keymap.map(name);
    if (!ckpt.has(key)) {
      if (!(o.allow_missing && o.allow_missing(name))) report.missing.push_back(key);
      return;
    }
    used.insert(key);
    auto t = ckpt.load(key, torch::kCPU);
    t = o.keymap.apply(name, t);
    if (t.sizes() != target.sizes()) {
      report.mismatched.push_back({key, target.sizes().vec(), t.sizes().vec()});
      return;
    }
    const auto dtype = (o.dtype && target.is_floating_point()) ? *o.dtype : target.scalar_type();
    target.set_data(t.to(o.device, dtype));
  };
  for (auto& p : module.named_parameters(/*recurse=*/true)) bind_one(p.key(), p.value());
  for (auto& b : module.named_buffers(/*recurse=*/true)) bind_one(b.key(), b.value());
  for (const auto& n : ckpt.names())
    if (!used.count(n) && n.rfind(o.scope, 0) == 0) report.unexpected.push_back(n);
  if (o.strict && (!report.ok() || (o.report_unexpected && !report.unexpected.empty())))
    throw Error(Status::BadModel, report.describe(ckpt.path()));
  return report;
}

}  // namespace loupe::io
