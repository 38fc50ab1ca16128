// Task "edit" (edit by words) as the runtime sees it: a job that takes two sessions, a finder
// (segmentation or grounding) and a painter (inpainting). The runtime owns residency and the job
// queue; the chain itself (find -> mask -> paint) is pipelines/edit.cpp, reached through these
// declarations at link time (as model_families() and tasks::table()), so core/ includes no pipeline.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "core/job.h"
#include "core/model.h"
#include "core/types.h"

namespace loupe::edit {

// A session as the chain sees it: its name for messages, and its model, made resident on the
// device when asked for (the runtime's VRAM budget may have offloaded it).
struct Part {
  std::string name;  // "florence2-base (models/Florence-2-base)"
  std::shared_ptr<Model> model;  // for the checks at submit (tasks offered); may be null
  std::function<std::shared_ptr<Model>()> resident;
};

// Checks a resolved "edit" request against its sessions at submit: the finder is needed unless a
// mask is given, the painter unless paint = 0, and each must offer what the chain asks of it.
// Errors (InvalidArgument) name the session and the tasks it offers.
void check(const Request& request, const Part* finder, const Part* painter);

// Runs a resolved, checked "edit" request (on the runtime's worker).
std::unique_ptr<Result> run(const Request& request, const Part* finder, const Part* painter, JobContext& ctx);

}  // namespace loupe::edit
