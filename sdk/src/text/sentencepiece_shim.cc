// libloupe_sentencepiece.so: the C shim over libsentencepiece (see sentencepiece_shim.h). Built as
// its own shared library (the .cc suffix keeps it out of loupe_internal's *.cpp glob) and loaded
// only through dlmopen() by text/sentencepiece.cpp.
#include "text/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

struct lsp_model {
  sentencepiece::SentencePieceProcessor sp;
};

static void set_err(char* err, size_t cap, const std::string& msg) {
  if (!err || cap == 0) return;
  const size_t n = msg.size() < cap - 1 ? msg.size() : cap - 1;
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

extern "C" {

__attribute__((visibility("default"))) lsp_model* lsp_load(const char* data, size_t size,
                                                           char* err, size_t err_cap) {
  try {
    auto* m = new lsp_model;
    const auto st = m->sp.LoadFromSerializedProto(std::string_view(data, size));
    if (!st.ok()) {
      set_err(err, err_cap, st.ToString());
      delete m;
      return nullptr;
    }
    return m;
  } catch (const std::exception& e) {
    set_err(err, err_cap, e.what());
    return nullptr;
  }
}

__attribute__((visibility("default"))) void lsp_free(lsp_model* m) { delete m; }

__attribute__((visibility("default"))) long lsp_encode(const lsp_model* m, const char* text,
                                                       size_t len, int32_t* ids, size_t cap,
                                                       char* err, size_t err_cap) {
  try {
    std::vector<int> out;
    const auto st = m->sp.Encode(std::string_view(text, len), &out);
    if (!st.ok()) {
      set_err(err, err_cap, st.ToString());
      return -1;
    }
    if (out.size() <= cap)
      for (size_t i = 0; i < out.size(); ++i) ids[i] = out[i];
    return static_cast<long>(out.size());
  } catch (const std::exception& e) {
    set_err(err, err_cap, e.what());
    return -1;
  }
}

__attribute__((visibility("default"))) long lsp_decode(const lsp_model* m, const int32_t* ids,
                                                       size_t n, char* out, size_t cap, char* err,
                                                       size_t err_cap) {
  try {
    std::vector<int> in(ids, ids + n);
    std::string text;
    const auto st = m->sp.Decode(in, &text);
    if (!st.ok()) {
      set_err(err, err_cap, st.ToString());
      return -1;
    }
    if (text.size() <= cap) std::memcpy(out, text.data(), text.size());
    return static_cast<long>(text.size());
  } catch (const std::exception& e) {
    set_err(err, err_cap, e.what());
    return -1;
  }
}

__attribute__((visibility("default"))) int32_t lsp_piece_size(const lsp_model* m) {
  return m->sp.GetPieceSize();
}

__attribute__((visibility("default"))) long lsp_id_to_piece(const lsp_model* m, int32_t id,
                                                            char* out, size_t cap) {
  if (id < 0 || id >= m->sp.GetPieceSize()) return -1;
  const std::string& p = m->sp.IdToPiece(id);
  if (p.size() <= cap) std::memcpy(out, p.data(), p.size());
  return static_cast<long>(p.size());
}

__attribute__((visibility("default"))) float lsp_score(const lsp_model* m, int32_t id) {
  return m->sp.GetScore(id);
}

__attribute__((visibility("default"))) int lsp_type(const lsp_model* m, int32_t id) {
  const auto& sp = m->sp;
  if (sp.IsUnknown(id)) return LSP_UNKNOWN;
  if (sp.IsControl(id)) return LSP_CONTROL;
  if (sp.IsByte(id)) return LSP_BYTE;
  if (sp.IsUnused(id)) return LSP_UNUSED;
  // libsentencepiece has no IsUserDefined(); a user-defined piece is a normal one to callers.
  return LSP_NORMAL;
}

__attribute__((visibility("default"))) int32_t lsp_piece_to_id(const lsp_model* m,
                                                               const char* piece, size_t len) {
  return m->sp.PieceToId(std::string_view(piece, len));
}

__attribute__((visibility("default"))) int32_t lsp_special_id(const lsp_model* m, int which) {
  switch (which) {
    case 0: return m->sp.unk_id();
    case 1: return m->sp.bos_id();
    case 2: return m->sp.eos_id();
    case 3: return m->sp.pad_id();
    default: return -1;
  }
}

}  // extern "C"
