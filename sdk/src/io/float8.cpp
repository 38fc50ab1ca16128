#include "io/float8.h"

#include <array>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace loupe::io {

bool float8_kind(const std::string& d, Float8* kind) {
  if (d == "F8_E4M3") *kind = Float8::E4M3FN;
  else if (d == "F8_E5M2") *kind = Float8::E5M2;
  else return false;
  return true;
}

float float8_value(uint8_t b, Float8 kind) {
  const bool neg = b & 0x80;
  float v;
  if (kind == Float8::E4M3FN) {  // 1 sign, 4 exponent (bias 7), 3 mantissa; no inf; S.1111.111 = NaN
    const int e = (b >> 3) & 0xF, m = b & 0x7;
    if (e == 0xF && m == 0x7) return std::numeric_limits<float>::quiet_NaN();
    v = e == 0 ? std::ldexp(float(m) / 8.0f, -6) : std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  } else {  // 1 sign, 5 exponent (bias 15), 2 mantissa; IEEE inf / NaN at exponent 31
    const int e = (b >> 2) & 0x1F, m = b & 0x3;
    if (e == 0x1F) return m ? std::numeric_limits<float>::quiet_NaN() : (neg ? -1.0f : 1.0f) * INFINITY;
    v = e == 0 ? std::ldexp(float(m) / 4.0f, -14) : std::ldexp(1.0f + float(m) / 4.0f, e - 15);
  }
  return neg ? -v : v;
}

torch::Tensor decode_float8(const torch::Tensor& bytes, Float8 kind, torch::ScalarType dtype) {
  LOUPE_CHECK(bytes.scalar_type() == torch::kUInt8, Internal, "decode_float8: bytes are " << bytes.scalar_type());
  LOUPE_CHECK(c10::isFloatingType(dtype), Internal, "decode_float8: target " << dtype << " is not floating");
  static const auto tables = [] {
    std::array<torch::Tensor, 2> t;
    for (int k = 0; k < 2; ++k) {
      auto lut = torch::empty({256}, torch::kFloat32);
      auto* p = lut.data_ptr<float>();
      for (int i = 0; i < 256; ++i) p[i] = float8_value(uint8_t(i), k == 0 ? Float8::E4M3FN : Float8::E5M2);
      t[k] = lut;
    }
    return t;
  }();
  // The table in the target dtype on the bytes' device (256 values: nothing to cache).
  auto lut = tables[kind == Float8::E4M3FN ? 0 : 1].to(bytes.device(), dtype);
  return lut.index_select(0, bytes.reshape({-1}).to(torch::kInt32)).view(bytes.sizes());
}

}  // namespace loupe::io
