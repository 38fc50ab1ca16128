// C interface of libloupe_sentencepiece.so, our shim over Debian's libsentencepiece. The SDK never
// links it: text/sentencepiece.cpp loads it with dlmopen(LM_ID_NEWLM) into a link namespace of its
// own (see the comment there for why) and calls these through dlsym'd pointers. Only C types cross:
// the namespace has its own libc, libstdc++ and heap, so memory is never freed across the line
// (outputs go to caller buffers; a handle is freed by lsp_free).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lsp_model lsp_model;

// Piece types, as sentencepiece's ModelProto::SentencePiece::Type.
enum { LSP_NORMAL = 1, LSP_UNKNOWN = 2, LSP_CONTROL = 3, LSP_USER_DEFINED = 4, LSP_UNUSED = 5,
       LSP_BYTE = 6 };

// Loads a serialized ModelProto (the bytes of tokenizer.model). NULL on error, with the message
// written to err (NUL-terminated, truncated to err_cap).
lsp_model* lsp_load(const char* data, size_t size, char* err, size_t err_cap);
void lsp_free(lsp_model* m);
// Encodes text[0..len) into ids. Returns the number of ids (written only if <= cap), or -1 on
// error (message in err).
long lsp_encode(const lsp_model* m, const char* text, size_t len, int32_t* ids, size_t cap,
                char* err, size_t err_cap);
// Decodes ids into UTF-8. Returns the byte length (written only if <= cap), or -1 on error.
long lsp_decode(const lsp_model* m, const int32_t* ids, size_t n, char* out, size_t cap,
                char* err, size_t err_cap);
int32_t lsp_piece_size(const lsp_model* m);
// Copies piece `id` into out; returns its byte length (written only if <= cap), -1 if out of range.
long lsp_id_to_piece(const lsp_model* m, int32_t id, char* out, size_t cap);
float lsp_score(const lsp_model* m, int32_t id);
int lsp_type(const lsp_model* m, int32_t id);
// The id of the piece, or unk_id when absent.
int32_t lsp_piece_to_id(const lsp_model* m, const char* piece, size_t len);
// 0: unk, 1: bos, 2: eos, 3: pad (-1 when the model has none).
int32_t lsp_special_id(const lsp_model* m, int which);

#ifdef __cplusplus
}
#endif
