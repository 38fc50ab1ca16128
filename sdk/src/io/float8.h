// float8 weights as distributed in safetensors (dtype F8_E4M3 = PyTorch's float8_e4m3fn, F8_E5M2 =
// float8_e5m2). libtorch 1.13 has no float8 type: the bytes are kept as uint8 and decoded here
// through a table of the 256 values (exact: every float8 value is a float32, bf16 and fp16 value;
// e4m3fn's largest is 448, e5m2's 57344).
#pragma once
#include <string>

#include <torch/torch.h>

namespace loupe::io {

enum class Float8 { E4M3FN, E5M2 };

// "F8_E4M3" / "F8_E5M2" -> the kind; false for any other dtype string.
bool float8_kind(const std::string& safetensors_dtype, Float8* kind);
// The value of one byte (NaN for the NaN codes; e5m2 has +-inf).
float float8_value(uint8_t byte, Float8 kind);
// uint8 bytes (any shape, any device) -> `dtype` (floating) on the same device, same shape.
torch::Tensor decode_float8(const torch::Tensor& bytes, Float8 kind, torch::ScalarType dtype);

}  // namespace loupe::io
