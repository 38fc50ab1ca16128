#include "core/hub.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/catalog.h"
#include "core/error.h"
#include "io/config.h"
#include "io/sha256.h"

namespace fs = std::filesystem;

namespace loupe::hub {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool truthy(const std::string& v) {
  const std::string l = lower(trim(v));
  return l == "1" || l == "true" || l == "yes" || l == "on";
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    const size_t q = s.find(sep, p);
    std::string part = trim(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (!part.empty()) out.push_back(part);
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

std::string percent_encode(const std::string& s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

void check_repo(const std::string& repo) {
  const auto bad = [&](const std::string& why) {
    LOUPE_THROW(InvalidArgument, "download: repo '" << repo << "' " << why
                                                    << "; write it as on the hub, e.g. microsoft/Florence-2-base");
  };
  if (repo.empty()) bad("is empty");
  if (std::count(repo.begin(), repo.end(), '/') > 1) bad("has more than one '/'");
  if (repo.find("..") != std::string::npos || repo.front() == '/' || repo.back() == '/') bad("is not ORG/NAME");
  for (unsigned char c : repo)
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '/')) bad("holds the character '" + std::string(1, char(c)) + "'");
}

void check_file_name(const std::string& f) {
  const auto bad = [&](const std::string& why) {
    LOUPE_THROW(InvalidArgument, "download: file '" << f << "' " << why << " (give paths inside the repo, e.g. unet/config.json)");
  };
  if (f.empty()) bad("is empty");
  if (f.front() == '/' || f.find('\\') != std::string::npos) bad("is not a relative path");
  for (const auto& part : split(f, '/'))
    if (part == ".." || part == ".") bad("steps out of the repo");
  for (unsigned char c : f)
    if (c < 0x20) bad("holds a control character");
  if (f.size() > 5 && f.compare(f.size() - 5, 5, ".part") == 0) bad("ends with .part, the name of unfinished downloads");
}

std::string quote_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "'" : ", '") + x + "'";
  return s;
}

// ------------------------------------------------------------------ HTTP with libcurl

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Response {
  long code = 0;
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  std::map<std::string, std::string> first;  // headers of the first response (before redirects)
  std::map<std::string, std::string> last;   // headers of the last response
  std::string body;                          // error bodies only (first KiB)
  int blocks = 0;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  const std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    ++r->blocks;
    r->last.clear();
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  const std::string name = lower(trim(line.substr(0, colon)));
  const std::string value = trim(line.substr(colon + 1));
  r->last[name] = value;
  if (r->blocks <= 1) r->first[name] = value;
  return size * n;
}

std::string unquote_etag(std::string v) {
  if (v.rfind("W/", 0) == 0) v = v.substr(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return lower(v);
}

// The LFS sha256 the hub sends for a file (X-Linked-Etag, else ETag when it is 64 hex digits).
std::string lfs_sha256(const Response& r) {
  for (const char* h : {"x-linked-etag", "etag"})
    if (auto it = r.first.find(h); it != r.first.end()) {
      const std::string v = unquote_etag(it->second);
      if (is_hex64(v)) return v;
    }
  return "";
}

int64_t header_size(const Response& r) {
  for (const auto* m : {&r.first, &r.last})
    for (const char* h : {"x-linked-size", "content-length"})
      if (auto it = m->find(h); it != m->end()) {
        try {
          return std::stoll(it->second);
        } catch (...) {
        }
      }
  return -1;
}

struct Curl {
  CURL* h;
  curl_slist* headers = nullptr;
  char error[CURL_ERROR_SIZE] = {0};
  Curl(const std::string& url, const std::string& token, Response& r) {
    global_init();
    h = curl_easy_init();
    if (!h) LOUPE_THROW(Internal, "download: libcurl could not start a transfer");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_USERAGENT, "loupe/" LOUPE_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);  // a stalled connection: 60 s without a byte
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    // libcurl drops a custom Authorization header when a redirect leaves the host (the CDN).
    if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    if (headers) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
  }
  ~Curl() {
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
  }
  void perform(Response& r) {
    r.curl = curl_easy_perform(h);
    if (r.curl != CURLE_OK) r.curl_error = error[0] ? error : curl_easy_strerror(r.curl);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.code);
  }
};

bool transient(const Response& r) {
  switch (r.curl) {
    case CURLE_OK: return r.code >= 500 || r.code == 429 || r.code == 408;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
  }
}

std::string server_says(const Response& r) {
  std::string msg;
  if (auto it = r.first.find("x-error-message"); it != r.first.end()) msg = it->second;
  else if (!r.body.empty()) {
    try {
      const auto j = nlohmann::json::parse(r.body);
      if (j.is_object() && j.contains("error") && j["error"].is_string()) msg = j["error"].get<std::string>();
    } catch (...) {
    }
  }
  return msg.empty() ? "" : " (the server says: " + msg.substr(0, 300) + ")";
}

// The error for a final HTTP status, with what to do.
[[noreturn]] void http_error(const Response& r, const DownloadSpec& s, const std::string& file, const std::string& url) {
  const std::string page = s.endpoint + "/" + s.repo;
  if (r.code == 401 || r.code == 403) {
    const std::string gated = r.first.count("x-error-code") ? r.first.at("x-error-code") : "";
    LOUPE_THROW(NotFound, "download: " << url << " answered " << r.code << (r.code == 401 ? " Unauthorized" : " Forbidden")
                                       << server_says(r) << ": '" << s.repo << "' is gated or private"
                                       << (gated.empty() ? "" : " (" + gated + ")") << ", or does not exist. "
                                       << "To download it: open " << page << ", log in and accept the model's license, "
                                       << "then set HF_TOKEN to an access token (" << s.endpoint << "/settings/tokens)"
                                       << (s.token.empty() ? "; no token was sent (HF_TOKEN and the token file "
                                                              "HF_TOKEN_PATH / HF_HOME/token are unset)"
                                                           : "; a token was sent but is not allowed this repo")
                                       << ". Also check the repo name.");
  }
  if (r.code == 404)
    LOUPE_THROW(NotFound, "download: " << url << " answered 404 Not Found" << server_says(r) << ": the file '" << file
                                       << "' is not in " << s.repo << " at revision '" << s.revision
                                       << "'; check the repo, file and revision on " << page << "/tree/" << s.revision
                                       << (s.catalog_id.empty() ? "" : " (the catalog entry '" + s.catalog_id + "' may be out of date)"));
  LOUPE_THROW(NotFound, "download: " << url << " answered HTTP " << r.code << server_says(r) << " for '" << file
                                     << "'; try again later, or check HF_ENDPOINT (" << s.endpoint << ")");
}

[[noreturn]] void network_error(const Response& r, const std::string& url, int attempts, const std::string& kept) {
  LOUPE_THROW(NotFound, "download: could not fetch " << url << " (" << r.curl_error << ", " << attempts << " attempt"
                                                     << (attempts == 1 ? "" : "s") << "); check the network connection or "
                                                     << "HF_ENDPOINT" << kept);
}

void backoff(int attempt, JobContext& ctx) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(250 * attempt);
  while (std::chrono::steady_clock::now() < until) {
    ctx.check_cancelled();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

constexpr int kAttempts = 5;

// HEAD without following redirects, as huggingface_hub does: the hub's first answer carries the
// file's size and LFS sha256 (X-Linked-Size / X-Linked-Etag) even when it redirects to a CDN.
// Returns false on 404 (the caller may try another name).
bool head(const DownloadSpec& s, const std::string& file, int64_t* size, std::string* sha, JobContext& ctx) {
  const std::string url = file_url(s.endpoint, s.repo, s.revision, file);
  for (int attempt = 1;; ++attempt) {
    ctx.check_cancelled();
    Response r;
    Curl c(url, s.token, r);
    curl_easy_setopt(c.h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 0L);
    c.perform(r);
    if (r.curl == CURLE_OK && r.code == 404) return false;
    if (r.curl == CURLE_OK && r.code >= 200 && r.code < 400) {
      *size = header_size(r);
      *sha = lfs_sha256(r);
      return true;
    }
    if (transient(r) && attempt < kAttempts) {
      backoff(attempt, ctx);
      continue;
    }
    if (r.curl != CURLE_OK) network_error(r, url, attempt, "");
    http_error(r, s, file, url);
  }
}

struct Totals {
  uint64_t total = 0;       // bytes to fetch (known sizes)
  uint64_t done = 0;        // bytes fetched so far (this run)
  uint64_t last_report = 0;
  uint64_t downloaded = 0;
};

struct Transfer {
  int fd = -1;
  uint64_t have = 0;  // bytes in the .part file (all hashed)
  io::Sha256 hash;
  Response* resp = nullptr;
  CURL* h = nullptr;
  bool started = false;
  bool writing = false;
  bool cancelled = false;
  int write_errno = 0;
  JobContext* ctx = nullptr;
  Totals* totals = nullptr;
  std::string stage;
};

void report(Transfer& t, bool force) {
  Totals& T = *t.totals;
  const uint64_t step = std::max<uint64_t>(256 << 10, T.total / 200);
  if (!force && T.done - T.last_report < step) return;
  T.last_report = T.done;
  try {
    t.ctx->progress(static_cast<int>(std::min<uint64_t>(T.done >> 10, INT32_MAX)),
                    static_cast<int>(std::min<uint64_t>(T.total >> 10, INT32_MAX)), t.stage);
  } catch (const Error&) {
    t.cancelled = true;
  }
}

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (!t->started) {
    t->started = true;
    long code = 0;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &code);
    t->writing = code == 200 || code == 206;
    if (code == 200 && t->have > 0) {
      // The server ignored the range: start over.
      if (ftruncate(t->fd, 0) != 0) {
        t->write_errno = errno;
        return 0;
      }
      t->totals->done -= std::min(t->totals->done, t->have);
      t->hash.reset();
      t->have = 0;
    }
  }
  if (!t->writing) {  // an error page: keep its start for the message, never in the file
    if (t->resp->body.size() < 1024) t->resp->body.append(data, std::min<size_t>(bytes, 1024 - t->resp->body.size()));
    return bytes;
  }
  if (t->ctx->cancelled()) {
    t->cancelled = true;
    return 0;
  }
  size_t off = 0;
  while (off < bytes) {
    const ssize_t w = ::write(t->fd, data + off, bytes - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      t->write_errno = errno;
      return 0;
    }
    off += static_cast<size_t>(w);
  }
  t->hash.update(data, bytes);
  t->have += bytes;
  t->totals->done += bytes;
  t->totals->downloaded += bytes;
  report(*t, false);
  return t->cancelled ? 0 : bytes;
}

int on_xfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->ctx->cancelled() || t->cancelled ? 1 : 0;
}

struct Item {
  std::string file;
  int64_t size = -1;
  std::string sha;         // expected sha256 ("" = unknown)
  std::string sha_source;  // "the catalog" / "the hub's LFS ETag"
  bool present = false;    // already in the destination
  bool verified = false;
};

// Downloads one file into dest/file through dest/file.part: resumes what a .part holds, retries
// dropped connections from where they stopped, verifies, then renames.
void fetch(const DownloadSpec& s, Item& it, JobContext& ctx, Totals& totals) {
  const fs::path final_path = fs::path(s.dest) / it.file;
  const fs::path part = final_path.string() + ".part";
  const std::string url = file_url(s.endpoint, s.repo, s.revision, it.file);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec) LOUPE_THROW(InvalidArgument, "download: cannot create the folder " << final_path.parent_path().string() << " (" << ec.message() << ")");
  Transfer t;
  t.fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (t.fd < 0) LOUPE_THROW(InvalidArgument, "download: cannot write " << part.string() << " (" << std::strerror(errno) << ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{t.fd};
  if (flock(t.fd, LOCK_EX | LOCK_NB) != 0)
    LOUPE_THROW(InvalidState, "download: another download of " << final_path.string() << " is running; wait for it or cancel it");
  // What an earlier, interrupted download left: hash it and go on from its end.
  {
    std::ifstream in(part, std::ios::binary);
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      if (in.gcount() > 0) {
        t.hash.update(buf.data(), static_cast<size_t>(in.gcount()));
        t.have += static_cast<uint64_t>(in.gcount());
      }
    }
  }
  totals.done += t.have;
  t.ctx = &ctx;
  t.totals = &totals;
  t.stage = "download " + it.file;
  const auto kept = [&] {
    return "; the " + std::to_string(t.have) + " bytes so far are kept in " + part.string() +
           " and a new download continues from there";
  };
  bool restarted = false;
  for (int attempt = 1;; ++attempt) {
    ctx.check_cancelled();
    if (it.size >= 0 && t.have == static_cast<uint64_t>(it.size)) break;  // the .part is whole
    Response r;
    Curl c(url, s.token, r);
    t.resp = &r;
    t.h = c.h;
    t.started = false;
    t.writing = false;
    curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &t);
    const std::string range = std::to_string(t.have) + "-";
    if (t.have > 0) curl_easy_setopt(c.h, CURLOPT_RANGE, range.c_str());
    c.perform(r);
    if (t.cancelled || ctx.cancelled())
      LOUPE_THROW(Cancelled, "download of " << it.file << " from " << s.repo << " was cancelled" << kept());
    if (t.write_errno)
      LOUPE_THROW(InvalidState, "download: writing " << part.string() << " failed (" << std::strerror(t.write_errno)
                                                     << "); free some disk space and download again" << kept());
    if (it.sha.empty()) {  // HEAD gave no sha256: take the one this answer carries
      it.sha = lfs_sha256(r);
      if (!it.sha.empty()) it.sha_source = "the hub's LFS ETag";
    }
    if (r.curl == CURLE_OK && (r.code == 200 || r.code == 206)) {
      if (it.size < 0 || t.have >= static_cast<uint64_t>(it.size)) break;
      // a short answer: resume below
    } else if (r.curl == CURLE_OK && r.code == 416 && !restarted) {
      // The .part is longer than the file (a different file under the same name): start over.
      if (ftruncate(t.fd, 0) != 0) LOUPE_THROW(InvalidState, "download: cannot truncate " << part.string());
      totals.done -= std::min(totals.done, t.have);
      t.hash.reset();
      t.have = 0;
      restarted = true;
      continue;
    } else if (!transient(r) || attempt >= kAttempts) {
      if (r.curl != CURLE_OK) network_error(r, url, attempt, kept());
      http_error(r, s, it.file, url);
    }
    if (attempt >= kAttempts)
      LOUPE_THROW(NotFound, "download: " << url << " kept stopping early (" << attempt << " attempts)" << kept());
    backoff(attempt, ctx);
  }
  report(t, true);
  auto reject = [&](const std::string& why) {
    ::unlink(part.c_str());
    LOUPE_THROW(BadModel, "download: " << it.file << " from " << url << " " << why
                                       << "; the file was deleted (nothing half-right is kept): download it again, and "
                                          "if this repeats, the catalog entry or the mirror (HF_ENDPOINT) is wrong");
  };
  if (it.size >= 0 && t.have != static_cast<uint64_t>(it.size))
    reject("has " + std::to_string(t.have) + " bytes where the hub announced " + std::to_string(it.size));
  if (!it.sha.empty()) {
    const std::string got = t.hash.hex();
    if (got != it.sha) reject("has sha256 " + got + ", but " + it.sha_source + " says " + it.sha);
    it.verified = true;
  }
  if (::fsync(t.fd) != 0) LOUPE_THROW(InvalidState, "download: cannot flush " << part.string() << " (" << std::strerror(errno) << ")");
  if (std::rename(part.c_str(), final_path.c_str()) != 0)
    LOUPE_THROW(InvalidState, "download: cannot rename " << part.string() << " to " << final_path.string() << " ("
                                                         << std::strerror(errno) << ")");
}

}  // namespace

std::string hf_home() {
  if (auto h = env("HF_HOME"); !h.empty()) return h;
  if (auto x = env("XDG_CACHE_HOME"); !x.empty()) return (fs::path(x) / "huggingface").string();
  return (fs::path(env("HOME")) / ".cache" / "huggingface").string();
}

std::string endpoint() {
  std::string e = trim(env("HF_ENDPOINT"));
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e.empty() ? "https://huggingface.co" : e;
}

std::string token() {
  if (auto t = trim(env("HF_TOKEN")); !t.empty()) return t;
  std::string path = env("HF_TOKEN_PATH");
  if (path.empty()) path = (fs::path(hf_home()) / "token").string();
  std::ifstream in(path);
  std::string line;
  if (in && std::getline(in, line)) return trim(line);
  return "";
}

bool offline(std::string* which) {
  for (const char* v : {"HF_HUB_OFFLINE", "LOUPE_OFFLINE"})
    if (truthy(env(v))) {
      if (which) *which = v;
      return true;
    }
  return false;
}

std::string file_url(const std::string& ep, const std::string& repo, const std::string& revision, const std::string& file) {
  return ep + "/" + percent_encode(repo, true) + "/resolve/" + percent_encode(revision, false) + "/" + percent_encode(file, true);
}

DownloadSpec download_spec(const Request& r, const std::string& models_dir) {
  DownloadSpec s;
  const std::string catalog_id = r.get_string("catalog_id");
  const std::string repo = r.get_string("repo");
  std::string which;
  if (offline(&which))
    LOUPE_THROW(Unsupported, "download: Loupe is offline (" << which << " is set), so '"
                                                             << (catalog_id.empty() ? repo : catalog_id)
                                                             << "' is not downloaded; unset " << which
                                                             << " to download, or copy the model's files into the models folder yourself");
  if (catalog_id.empty() && repo.empty())
    LOUPE_THROW(InvalidArgument, "download: set the string parameter 'catalog_id' (an entry of the catalog, e.g. "
                                 "florence2-base) or 'repo' (e.g. microsoft/Florence-2-base) with 'files'");
  std::string folder;
  if (!catalog_id.empty()) {
    const std::string catalog_path = r.get_string("catalog");
    Catalog loaded;
    if (!catalog_path.empty()) loaded = Catalog::load(catalog_path);
    const Catalog& cat = catalog_path.empty() ? Catalog::builtin() : loaded;
    const CatalogVariant* v = cat.find(catalog_id);
    if (!v) {
      std::vector<std::string> ids;
      for (const auto& x : cat.variants()) ids.push_back(x.id);
      LOUPE_THROW(NotFound, "download: the catalog has no entry '" << catalog_id << "'; it has " << quote_list(ids));
    }
    if (!repo.empty() && repo != v->repo)
      LOUPE_THROW(InvalidArgument, "download: 'catalog_id' " << catalog_id << " is the repo " << v->repo
                                                             << ", but 'repo' says " << repo << "; set only one of them");
    s.catalog_id = v->id;
    s.repo = v->repo;
    s.revision = v->revision;
    s.files = v->download;
    s.sha256 = v->sha256;
    folder = v->folder;
  } else {
    s.repo = repo;
    folder = repo.substr(repo.find('/') + 1);
  }
  check_repo(s.repo);
  if (!r.get_string("files").empty()) {
    s.files = split(r.get_string("files"), ',');
    if (s.files.empty()) LOUPE_THROW(InvalidArgument, "download: 'files' lists no file (comma-separated paths in the repo)");
  } else if (catalog_id.empty()) {
    LOUPE_THROW(InvalidArgument, "download: set 'files' (comma-separated paths in the repo, e.g. "
                                 "\"config.json,model.safetensors\"), or download a catalog entry with 'catalog_id'");
  }
  for (const auto& entry : s.files)
    for (const auto& f : split(entry[0] == '?' ? entry.substr(1) : entry, '|')) check_file_name(f);
  if (!r.get_string("revision").empty()) {
    s.revision = trim(r.get_string("revision"));
    if (s.revision.empty() || s.revision.find("..") != std::string::npos)
      LOUPE_THROW(InvalidArgument, "download: revision '" << r.get_string("revision") << "' is not a branch, tag or commit");
  }
  s.endpoint = !r.get_string("endpoint").empty() ? trim(r.get_string("endpoint")) : endpoint();
  while (!s.endpoint.empty() && s.endpoint.back() == '/') s.endpoint.pop_back();
  if (s.endpoint.rfind("http://", 0) != 0 && s.endpoint.rfind("https://", 0) != 0)
    LOUPE_THROW(InvalidArgument, "download: endpoint '" << s.endpoint << "' is not an http:// or https:// URL (HF_ENDPOINT or 'endpoint')");
  s.dest = r.get_string("dest");
  if (s.dest.empty()) {
    if (models_dir.empty())
      LOUPE_THROW(InvalidArgument, "download: set 'dest' (the folder to download into), or create the runtime with a models_dir");
    s.dest = (fs::path(models_dir) / folder).string();
  }
  std::error_code ec;
  if (fs::exists(s.dest, ec) && !fs::is_directory(s.dest, ec))
    LOUPE_THROW(InvalidArgument, "download: 'dest' " << s.dest << " exists and is not a folder");
  s.token = token();
  return s;
}

std::unique_ptr<Result> download(const DownloadSpec& s, JobContext& ctx) {
  std::error_code ec;
  fs::create_directories(s.dest, ec);
  if (ec) LOUPE_THROW(InvalidArgument, "download: cannot create the folder " << s.dest << " (" << ec.message() << ")");
  // A marker while files are missing: discovery reports the folder as an unfinished download.
  const fs::path marker = fs::path(s.dest) / ".loupe-download";
  {
    std::ofstream m(marker);
    m << nlohmann::json{{"repo", s.repo}, {"revision", s.revision}, {"files", s.files}}.dump() << "\n";
  }
  Totals totals;
  std::vector<Item> items;
  std::set<std::string> planned;
  std::vector<std::string> queue = s.files;
  ctx.progress(0, 0, "resolve");
  // 1. Which files, their sizes and sha256 (HEAD); an index of shards is fetched at once and
  //    brings its shards into the plan.
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    std::string entry = queue[qi];
    const bool optional = !entry.empty() && entry[0] == '?';
    if (optional) entry = entry.substr(1);
    const auto alts = split(entry, '|');
    Item it;
    bool found = false;
    for (const auto& a : alts)
      if (fs::is_regular_file(fs::path(s.dest) / a, ec)) {
        it.file = a;
        it.present = true;
        found = true;
        break;
      }
    for (size_t i = 0; !found && i < alts.size(); ++i) {
      if (head(s, alts[i], &it.size, &it.sha, ctx)) {
        it.file = alts[i];
        found = true;
      }
    }
    if (!found) {
      if (optional) continue;
      std::string tried;
      for (const auto& a : alts) tried += (tried.empty() ? "" : ", ") + file_url(s.endpoint, s.repo, s.revision, a);
      LOUPE_THROW(NotFound, "download: " << (alts.size() > 1 ? "none of " + quote_list(alts) + " is" : "'" + alts[0] + "' is not")
                                         << " in " << s.repo << " at revision '" << s.revision << "' (404 from " << tried
                                         << "); check the repo and file names on " << s.endpoint << "/" << s.repo
                                         << (s.catalog_id.empty() ? "" : " (the catalog entry '" + s.catalog_id + "' may be out of date)"));
    }
    if (!planned.insert(it.file).second) continue;
    if (auto sh = s.sha256.find(it.file); sh != s.sha256.end()) {
      it.sha = sh->second;
      it.sha_source = "the catalog";
    } else if (!it.sha.empty()) {
      it.sha_source = "the hub's LFS ETag";
    }
    if (it.file.size() > 11 && it.file.compare(it.file.size() - 11, 11, ".index.json") == 0) {
      if (!it.present) fetch(s, it, ctx, totals);
      it.present = true;
      const fs::path index = fs::path(s.dest) / it.file;
      const auto j = io::read_json_file(index.string());
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        LOUPE_THROW(BadModel, "download: " << index.string() << " has no \"weight_map\" object");
      const std::string dir = fs::path(it.file).parent_path().string();
      std::set<std::string> shards;
      for (auto w = j["weight_map"].begin(); w != j["weight_map"].end(); ++w)
        if (w->is_string()) shards.insert((dir.empty() ? "" : dir + "/") + w->get<std::string>());
      for (const auto& sh : shards) {
        check_file_name(sh);
        queue.push_back(sh);
      }
    }
    items.push_back(it);
  }
  // 2. The files, one after the other.
  for (const auto& it : items)
    if (!it.present && it.size > 0) totals.total += static_cast<uint64_t>(it.size);
  int verified = 0, fetched = 0;
  for (auto& it : items) {
    if (it.present) continue;
    fetch(s, it, ctx, totals);
    verified += it.verified ? 1 : 0;
    ++fetched;
  }
  fs::remove(marker, ec);
  uint64_t bytes = 0;
  for (const auto& it : items) bytes += fs::file_size(fs::path(s.dest) / it.file, ec);
  auto res = std::make_unique<Result>();
  res->task = "download";
  res->text = s.dest;
  res->numbers["files"] = static_cast<double>(items.size());
  res->numbers["fetched"] = fetched;
  res->numbers["verified"] = verified;
  res->numbers["bytes"] = static_cast<double>(bytes);
  res->numbers["bytes_downloaded"] = static_cast<double>(totals.downloaded);
  res->strings["path"] = s.dest;
  res->strings["repo"] = s.repo;
  res->strings["revision"] = s.revision;
  if (!s.catalog_id.empty()) res->strings["catalog_id"] = s.catalog_id;
  return res;
}

}  // namespace loupe::hub
