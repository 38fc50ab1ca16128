// The Stable Diffusion request the model tests start from: 3 steps, seed 11.
#pragma once
#include <string>

#include "core/types.h"

inline loupe::Request sd_request(const std::string& task, const std::string& prompt) {
  loupe::Request r;
  r.task = task;
  r.strings["prompt"] = prompt;
  r.ints["steps"] = 3;
  r.ints["seed"] = 11;
  return r;
}
