#include "io/zip.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace loupe::io {

namespace {
uint32_t u32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }
uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
}  // namespace

MappedFile::~MappedFile() {
  if (data) munmap(const_cast<uint8_t*>(data), size);
}

std::unique_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) LOUPE_THROW(NotFound, path << ": cannot open (" << std::strerror(errno) << ")");
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    LOUPE_THROW(BadModel, path << ": not a regular file");
  }
  auto m = std::make_unique<MappedFile>();
  m->size = static_cast<size_t>(st.st_size);
  void* addr = m->size ? mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (addr == MAP_FAILED) {
    m->size = 0;
    LOUPE_THROW(BadModel, path << ": empty or unreadable file");
  }
  m->data = static_cast<const uint8_t*>(addr);
  return m;
}

std::map<std::string, ZipEntry> read_zip_directory(const std::string& path, const uint8_t* data, size_t n) {
  if (n < 22) LOUPE_THROW(BadModel, path << ": too short to be a zip archive");
  size_t eocd = std::string::npos;
  for (size_t i = n - 22 + 1; i-- > (n > 65557 ? n - 65557 : 0);)
    if (u32(data + i) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos)
    LOUPE_THROW(BadModel, path << ": no zip end-of-directory record (not a zip archive, or a truncated download)");
  const uint16_t count = u16(data + eocd + 10);
  const size_t cd_offset = u32(data + eocd + 16);
  if (cd_offset == 0xFFFFFFFFu || count == 0xFFFF)
    LOUPE_THROW(Unsupported, path << ": zip64 archives (over 4 GiB) are not read yet; hint: convert to safetensors");
  std::map<std::string, ZipEntry> entries;
  size_t p = cd_offset;
  for (uint16_t i = 0; i < count; ++i) {
    if (p > n || n - p < 46 || u32(data + p) != 0x02014b50) LOUPE_THROW(BadModel, path << ": corrupt zip central directory");
    ZipEntry e;
    e.method = u16(data + p + 10);
    e.crc32 = u32(data + p + 16);
    e.compressed_size = u32(data + p + 20);
    e.size = u32(data + p + 24);
    const size_t name_len = u16(data + p + 28), extra_len = u16(data + p + 30), comment_len = u16(data + p + 32);
    size_t local = u32(data + p + 42);
    if (n - p < 46 + name_len + extra_len + comment_len) LOUPE_THROW(BadModel, path << ": corrupt zip central directory");
    const std::string name(reinterpret_cast<const char*>(data + p + 46), name_len);
    if (e.compressed_size == 0xFFFFFFFFu || e.size == 0xFFFFFFFFu || local == 0xFFFFFFFFu) {
      // zip64 extra field (id 1): the 64-bit values of the fields set to 0xFFFFFFFF, in this order
      const uint8_t* x = data + p + 46 + name_len;
      const uint8_t* xend = x + extra_len;
      bool found = false;
      while (xend - x >= 4) {
        const uint16_t id = u16(x), len = u16(x + 2);
        if (static_cast<size_t>(xend - x - 4) < len) break;
        if (id == 1) {
          const uint8_t* v = x + 4;
          const uint8_t* vend = v + len;
          auto next = [&](size_t& field) {
            if (field != 0xFFFFFFFFu) return true;
            if (vend - v < 8) return false;
            uint64_t val = 0;
            for (int k = 7; k >= 0; --k) val = (val << 8) | v[k];
            v += 8;
            field = static_cast<size_t>(val);
            return true;
          };
          found = next(e.size) && next(e.compressed_size) && next(local);
          break;
        }
        x += 4 + len;
      }
      if (!found)
        LOUPE_THROW(BadModel, path << ": zip entry '" << name << "' has 0xFFFFFFFF sizes but no valid zip64 extra field");
    }
    if (local > n || n - local < 30 || u32(data + local) != 0x04034b50)
      LOUPE_THROW(BadModel, path << ": corrupt zip entry '" << name << "' (no local header; truncated file?)");
    e.offset = local + 30 + u16(data + local + 26) + u16(data + local + 28);
    if (e.offset > n || n - e.offset < e.compressed_size)
      LOUPE_THROW(BadModel, path << ": zip entry '" << name << "' runs past the end of the file (truncated file?)");
    if (e.method == 0 && e.compressed_size != e.size)
      LOUPE_THROW(BadModel, path << ": zip entry '" << name << "' is stored but its sizes differ");
    entries[name] = e;
    p += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

std::vector<uint8_t> read_zip_entry(const std::string& path, const uint8_t* data, const std::string& name,
                                    const ZipEntry& e) {
  std::vector<uint8_t> out;
  if (e.method == 0) {
    out.assign(data + e.offset, data + e.offset + e.size);
  } else if (e.method == 8) {
    // deflate cannot expand its input more than 1032:1; a larger declared size is a corrupt (or
    // hostile) header, refused before anything is allocated for it
    if (e.size / 1032 > e.compressed_size + 1)
      LOUPE_THROW(BadModel, path << ": zip entry '" << name << "' declares " << e.size << " bytes from "
                                 << e.compressed_size << " compressed bytes, more than deflate can produce (corrupt file)");
    out.resize(e.size);
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) LOUPE_THROW(Internal, "zlib inflateInit2 failed");
    // in steps of at most 1 GiB: zlib counts in 32-bit uInt, entries may be larger
    constexpr size_t kStep = size_t(1) << 30;
    size_t in_done = 0, out_done = 0;
    Bytef none = 0;  // zlib refuses a null next_out, which an empty vector gives
    int rc = Z_OK;
    for (;;) {
      zs.next_in = const_cast<Bytef*>(data + e.offset + in_done);
      zs.avail_in = static_cast<uInt>(std::min(kStep, e.compressed_size - in_done));
      zs.next_out = out.empty() ? &none : out.data() + out_done;
      zs.avail_out = static_cast<uInt>(std::min(kStep, out.size() - out_done));
      const uInt in0 = zs.avail_in, out0 = zs.avail_out;
      rc = inflate(&zs, Z_NO_FLUSH);  // Z_BUF_ERROR: no progress possible (input or room used up)
      in_done += in0 - zs.avail_in;
      out_done += out0 - zs.avail_out;
      if (rc != Z_OK) break;
    }
    const size_t produced = out_done;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != e.size)
      LOUPE_THROW(BadModel, path << ": zip entry '" << name << "' has corrupt deflate data ("
                                 << (rc == Z_STREAM_END ? "wrong size" : rc == Z_BUF_ERROR ? "truncated or too long"
                                                                                             : "invalid stream")
                                 << ")");
  } else {
    LOUPE_THROW(Unsupported, path << ": zip entry '" << name << "' uses compression method " << e.method
                                  << " (only stored and deflate are read)");
  }
  const uint32_t crc = static_cast<uint32_t>(::crc32_z(0L, out.data(), out.size()));
  if (crc != e.crc32) LOUPE_THROW(BadModel, path << ": zip entry '" << name << "' fails its CRC-32 check (corrupt file)");
  return out;
}

}  // namespace loupe::io
