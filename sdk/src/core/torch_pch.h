// Precompiled header for the SDK's translation units: torch is by far the heaviest include.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <memory>
#include <mutex>
