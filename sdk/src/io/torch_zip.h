// torch.save zip archives (pytorch_model.bin) read without running any code: the zip is parsed
// here, and data.pkl is interpreted by a small pickle machine that knows only what state dicts
// use (dicts, lists, tuples, numbers, strings, tensors via torch._utils._rebuild_tensor_v2 and
// storages). Any other global is refused, so a malicious pickle cannot do anything.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace loupe::io {

// name -> tensor (CPU), flattened ("a.b.c") when dicts are nested. Throws loupe::Error (NotFound,
// BadModel) naming the file and the reason.
std::map<std::string, torch::Tensor> read_torch_zip(const std::string& path);

}  // namespace loupe::io
