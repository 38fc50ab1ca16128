// NumPy's .npy arrays and .npz archives (a zip of .npy files, stored by np.savez, deflated by
// np.savez_compressed), read through the SDK's zip reader (io/zip.h). No pickle is ever run:
// object arrays are refused.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace loupe::io {

// entry name without ".npy" -> CPU tensor, contiguous, in the file's dtype: <f2 <f4 <f8 (float16/32/64),
// |i1 <i2 <i4 <i8, |u1, |b1 (little-endian or "|"; "=" is read as little-endian). Fortran-order arrays
// come back in C order with the same values. Entries not named *.npy are ignored.
// Throws NotFound (no file), BadModel (not a zip, bad .npy magic or header, truncated data, data size
// not matching the shape), Unsupported (dtype such as '<U5', '|O', '>f4', structured, uint16/32/64),
// each naming the file and the entry.
std::map<std::string, torch::Tensor> read_npz(const std::string& path);

// A lone .npy file; errors as above.
torch::Tensor read_npy(const std::string& path);

// One .npy image in memory; `where` names it in errors (e.g. "file.npz: entry 'a.npy'").
torch::Tensor parse_npy(const uint8_t* data, size_t size, const std::string& where);

}  // namespace loupe::io
