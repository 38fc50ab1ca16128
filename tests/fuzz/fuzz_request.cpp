// Requests through the C ABI (loupe.h): loupe_request_create with a task of the table or a raw
// name, then a sequence of setters read from the input (strings, ints, floats incl. NaN and
// infinities, regions, images and masks with any size, stride and format; NULL arguments), the
// task table read along the way. Every call must return a documented status; the request is freed.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "loupe/loupe.h"

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t byte() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  template <class T>
  T value() {
    T v{};
    const size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
  std::string str() {  // a length byte, then that many bytes (NULs kept out: C strings)
    const size_t len = byte() % 48;
    std::string s;
    for (size_t i = 0; i < len && n; ++i) {
      const char c = static_cast<char>(byte());
      s.push_back(c ? c : '_');
    }
    return s;
  }
};

void check(loupe_status s) {
  if (s != LOUPE_OK && s != LOUPE_ERROR_INVALID_ARGUMENT && s != LOUPE_ERROR_NOT_FOUND) {
    std::fprintf(stderr, "undocumented status %d: %s\n", static_cast<int>(s), loupe_last_error());
    std::abort();
  }
  if (s != LOUPE_OK && (!loupe_last_error() || !*loupe_last_error())) {
    std::fprintf(stderr, "status %d without a message\n", static_cast<int>(s));
    std::abort();
  }
}

// A key: one of the task's parameters (or its text key) most of the time, else any string.
std::string key(Reader& in, size_t task) {
  const uint8_t k = in.byte();
  loupe_task_info info = LOUPE_TASK_INFO_INIT;
  if (k < 200 && loupe_task_describe(nullptr, task, &info) == LOUPE_OK) {
    if (info.param_count && k % 4 != 0) {
      loupe_param_info p = LOUPE_PARAM_INFO_INIT;
      if (loupe_task_param(nullptr, task, k % info.param_count, &p) == LOUPE_OK) return p.name;
    }
    if (info.text_key && *info.text_key) return info.text_key;
  }
  return in.str();
}

void image(Reader& in, loupe_request* rq, int which) {
  loupe_image im;
  im.width = static_cast<int32_t>(in.byte() % 2 ? in.byte() : in.value<int32_t>());
  im.height = static_cast<int32_t>(in.byte() % 2 ? in.byte() : in.value<int32_t>());
  // any int, as a C host may pass (stored without a C++ enum conversion, which would be undefined)
  const int32_t format = static_cast<int32_t>(in.byte() % 5);
  std::memcpy(&im.format, &format, sizeof format);
  const int bpp = format == LOUPE_RGBA8 ? 4 : format == LOUPE_RGB8 ? 3 : 1;
  const int64_t packed = int64_t{im.width} * bpp + in.byte() % 8;
  im.stride = in.byte() % 2 ? static_cast<int32_t>(std::min<int64_t>(packed, INT32_MAX)) : in.value<int32_t>();
  // The caller's promise (loupe.h): data holds (height - 1) * stride + width * bpp bytes. Sizes that
  // cannot be allocated here get NULL data, which the library must refuse.
  std::vector<uint8_t> pixels;
  im.data = nullptr;
  if (im.width > 0 && im.height > 0 && im.stride > 0) {
    const double need = double(im.height - 1) * im.stride + double(im.width) * bpp;
    if (need < (8 << 20)) {
      pixels.assign(static_cast<size_t>(need), 0x80);
      im.data = pixels.data();
    }
  }
  const loupe_image* arg = in.byte() == 0 ? nullptr : &im;
  if (which == 0) check(loupe_request_set_image(rq, arg));
  else if (which == 1) check(loupe_request_add_image(rq, arg));
  else check(loupe_request_set_mask(rq, arg));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  const size_t tasks = loupe_task_count(nullptr);
  if (!tasks) std::abort();
  loupe_request* rq = nullptr;
  const uint8_t t = in.byte();
  size_t task = t % tasks;
  if (t >= 240) {  // a name not in the table (or NULL / empty)
    const std::string name = in.str();
    check(loupe_request_create(&rq, t == 255 ? nullptr : name.c_str()));
  } else {
    loupe_task_info info = LOUPE_TASK_INFO_INIT;
    check(loupe_task_describe(nullptr, task, &info));
    check(loupe_request_create(&rq, info.name));
    if (!rq) std::abort();
  }
  if (!rq) return 0;
  while (!in.empty()) {
    switch (in.byte() % 8) {
      case 0: {
        const auto k = key(in, task);
        const auto v = in.str();
        check(loupe_request_set_string(rq, in.byte() == 0 ? nullptr : k.c_str(), in.byte() == 0 ? nullptr : v.c_str()));
        break;
      }
      case 1: {
        const auto k = key(in, task);
        check(loupe_request_set_int(rq, k.c_str(), in.value<int64_t>()));
        break;
      }
      case 2: {
        const auto k = key(in, task);
        const uint8_t special = in.byte();
        double v = special == 1 ? NAN : special == 2 ? INFINITY : special == 3 ? -INFINITY : in.value<double>();
        check(loupe_request_set_float(rq, k.c_str(), v));
        break;
      }
      case 3: {
        const float x0 = in.value<float>(), y0 = in.value<float>(), x1 = in.value<float>(), y1 = in.value<float>();
        check(loupe_request_set_region(rq, x0, y0, x1, y1));
        break;
      }
      case 4: image(in, rq, 0); break;
      case 5: image(in, rq, 1); break;
      case 6: image(in, rq, 2); break;
      default: {  // calls on a NULL request
        check(loupe_request_set_int(nullptr, "seed", 1));
        break;
      }
    }
  }
  loupe_request_free(rq);
  return 0;
}
