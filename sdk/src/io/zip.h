// The SDK's one zip reader: the central directory of a zip archive read from a read-only mapping of
// the file, entries stored (torch.save, np.savez) or deflated (np.savez_compressed, via zlib).
// Used by io/torch_zip (pytorch_model.bin) and io/npz (.npz). Entries with zip64 extra fields are
// read; zip64 archives (over 65535 entries or a directory past 4 GiB) are refused.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace loupe::io {

// A file mapped read-only (munmap on destruction). Throws NotFound / BadModel naming the file.
struct MappedFile {
  const uint8_t* data = nullptr;
  size_t size = 0;
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
  static std::unique_ptr<MappedFile> open(const std::string& path);
};

struct ZipEntry {
  size_t offset = 0;           // of the (possibly compressed) data in the file
  size_t size = 0;             // uncompressed size
  size_t compressed_size = 0;  // == size for stored entries
  uint16_t method = 0;         // 0 stored, 8 deflated
  uint32_t crc32 = 0;
};

// name -> entry. Throws BadModel (not a zip, truncated, corrupt directory, an entry running past the
// end of the file) or Unsupported (zip64), each naming `path` (and the entry where there is one).
std::map<std::string, ZipEntry> read_zip_directory(const std::string& path, const uint8_t* data, size_t size);

// The bytes of one entry (inflated when deflated; CRC-32 checked). Throws BadModel for corrupt data
// and Unsupported for other compression methods, naming `path` and `name`.
std::vector<uint8_t> read_zip_entry(const std::string& path, const uint8_t* data, const std::string& name,
                                    const ZipEntry& entry);

}  // namespace loupe::io
