// Checkpoint conversion to a single safetensors file (loupe_checkpoint_convert, loupe-cli convert).
#pragma once
#include <string>

namespace loupe {

// Reads any checkpoint io::Checkpoint can open and writes its tensors, unchanged, to out_path
// (which must not exist; written to a temporary name first, then renamed).
void convert_checkpoint(const std::string& in_path, const std::string& out_path);

}  // namespace loupe
