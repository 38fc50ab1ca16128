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

bool KeyMap::has_transform(const std::string& name) const {
  for (const auto& tr : transforms_)
    if (std::regex_search(name, tr.first)) return true;
  return false;
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
  if (!prefix_rule.empty()) os << "; names read " << prefix_rule;
  os << "; hint: is this the right model family and variant for this folder?";
  return os.str();
}

namespace {

struct Entry {
  std::string name;       // module name
  torch::Tensor target;   // the module's parameter or buffer (a handle: set_data reaches the module)
  std::string key;        // checkpoint name ("" when missing)
  bool mismatched = false;
};

struct Plan {
  std::vector<Entry> entries;
  BindReport report;
};

// A prefix stripped from (or added to) a name after the scope.
struct PrefixFix {
  bool strip = false;
  std::string prefix;
  std::string apply(const std::string& key, const std::string& scope) const {
    if (key.rfind(scope, 0) != 0) return "";
    const std::string rest = key.substr(scope.size());
    if (!strip) return scope + prefix + rest;
    if (rest.size() <= prefix.size() || rest.rfind(prefix, 0) != 0) return "";
    return scope + rest.substr(prefix.size());
  }
};

// The key-prefix rule (see state_dict.h): candidates come from the first missing names (their
// leading one or two components, stripped; what a checkpoint name carries before them, added); the
// one that finds the most missing names wins.
PrefixFix find_prefix_fix(const std::vector<std::string>& missing, const Checkpoint& ckpt, const std::string& scope,
                          const std::set<std::string>& used) {
  std::vector<PrefixFix> candidates;
  const auto names = ckpt.names();
  for (size_t i = 0; i < missing.size() && i < 3; ++i) {
    const std::string& key = missing[i];
    if (key.rfind(scope, 0) != 0) continue;
    const std::string rest = key.substr(scope.size());
    size_t dot = rest.find('.');
    for (int parts = 0; parts < 2 && dot != std::string::npos && dot + 1 < rest.size(); ++parts) {
      candidates.push_back({true, rest.substr(0, dot + 1)});
      dot = rest.find('.', dot + 1);
    }
    for (const auto& n : names) {
      if (n.size() <= scope.size() + rest.size() || n.rfind(scope, 0) != 0) continue;
      if (n.compare(n.size() - rest.size(), rest.size(), rest) != 0 || n[n.size() - rest.size() - 1] != '.') continue;
      candidates.push_back({false, n.substr(scope.size(), n.size() - scope.size() - rest.size())});
    }
  }
  PrefixFix best;
  size_t best_found = 0;
  for (const auto& c : candidates) {
    size_t found = 0;
    for (const auto& k : missing) {
      const std::string f = c.apply(k, scope);
      if (!f.empty() && ckpt.has(f) && !used.count(f)) ++found;
    }
    if (found > best_found) {
      best_found = found;
      best = c;
    }
  }
  return best_found ? best : PrefixFix{};
}

Plan plan(torch::nn::Module& module, const Checkpoint& ckpt, const BindOptions& o) {
  Plan pl;
  std::set<std::string> used, direct;
  for (auto& p : module.named_parameters(/*recurse=*/true)) pl.entries.push_back({p.key(), p.value(), o.keymap.map(p.key())});
  for (auto& b : module.named_buffers(/*recurse=*/true)) pl.entries.push_back({b.key(), b.value(), o.keymap.map(b.key())});
  std::vector<std::string> missing;
  for (const auto& e : pl.entries) {
    if (ckpt.has(e.key)) direct.insert(e.key);
    else missing.push_back(e.key);
  }
  used = direct;
  PrefixFix fix;
  if (!missing.empty()) fix = find_prefix_fix(missing, ckpt, o.scope, direct);
  if (!fix.prefix.empty())
    pl.report.prefix_rule = std::string(fix.strip ? "without the prefix '" : "with the extra prefix '") + fix.prefix + "'";
  for (auto& e : pl.entries) {
    if (ckpt.has(e.key)) continue;
    const std::string f = fix.prefix.empty() ? std::string() : fix.apply(e.key, o.scope);
    if (!f.empty() && ckpt.has(f) && !direct.count(f)) {
      used.insert(f);
      e.key = f;
      continue;
    }
    if (!(o.allow_missing && o.allow_missing(e.name))) pl.report.missing.push_back(e.key);
    e.key.clear();
  }
  for (auto& e : pl.entries) {
    if (e.key.empty() || o.keymap.has_transform(e.name)) continue;  // transformed: checked when loaded
    const auto shape = ckpt.shape(e.key);
    if (shape != e.target.sizes().vec()) {
      pl.report.mismatched.push_back({e.key, e.target.sizes().vec(), shape});
      e.mismatched = true;
    }
  }
  for (const auto& n : ckpt.names())
    if (!used.count(n) && n.rfind(o.scope, 0) == 0) pl.report.unexpected.push_back(n);
  return pl;
}

void throw_if_strict(const BindReport& r, const Checkpoint& ckpt, const BindOptions& o) {
  if (o.strict && (!r.ok() || (o.report_unexpected && !r.unexpected.empty())))
    throw Error(Status::BadModel, r.describe(ckpt.path()));
}

}  // namespace

BindReport check(torch::nn::Module& module, const Checkpoint& ckpt, const BindOptions& o) {
  auto pl = plan(module, ckpt, o);
  throw_if_strict(pl.report, ckpt, o);
  return pl.report;
}

BindReport bind(torch::nn::Module& module, const Checkpoint& ckpt, const BindOptions& o) {
  torch::NoGradGuard no_grad;
  auto pl = plan(module, ckpt, o);
  throw_if_strict(pl.report, ckpt, o);  // names and shapes from the headers: nothing read yet
  BindReport& report = pl.report;
  for (auto& e : pl.entries) {
    if (e.key.empty() || e.mismatched) continue;
    auto t = ckpt.load(e.key, torch::kCPU);
    t = o.keymap.apply(e.name, t);
    if (t.sizes() != e.target.sizes()) {
      report.mismatched.push_back({e.key, e.target.sizes().vec(), t.sizes().vec()});
      continue;
    }
    const auto dtype = (o.dtype && e.target.is_floating_point()) ? *o.dtype : e.target.scalar_type();
    e.target.set_data(t.to(o.device, dtype));
  }
  throw_if_strict(report, ckpt, o);
  return report;
}

}  // namespace loupe::io
