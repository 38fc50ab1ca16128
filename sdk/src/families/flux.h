// FLUX.1 (schnell, dev, Fill) as a Loupe model family ("flux"): diffusers folders, Black Forest Labs
// single files and ComfyUI split files (the diffusion model file with separate T5-XXL, CLIP-L and
// ae.safetensors files found next to it or in the models folders), and the txt2img / img2img /
// inpaint tasks (pipelines/flux.h) with the editor-facing parts (only masked, feather, colour
// correction, exact outside pixels: pipelines/compose.h).
#pragma once
#include <string>
#include <vector>

#include "core/model.h"
#include "models/sd/prompt.h"
#include "text/bpe_tokenizer.h"
#include "text/sentencepiece.h"

namespace loupe::flux_family {

ModelFamily family();

// The CLIP token ids FluxPipeline.encode_prompt feeds CLIP-L: padding to 77 (BOS, at most 75
// tokens, EOS, padding); no prompt-weighting syntax. (T5's: text::encode_t5 with padding to
// t5_tokens_for(variant).)
std::vector<int64_t> clip_prompt_ids(const text::BpeTokenizer& tok, const sd::ClipTokens& ids, const std::string& prompt);
// max_sequence_length as the reference pipelines use it: 256 for "schnell", 512 for "dev" / "fill".
int t5_tokens_for(const std::string& variant);

// The parts a FLUX diffusion-model file needs besides itself, as found on this machine: a T5-XXL
// encoder file (t5xxl*.safetensors), a CLIP-L file (clip_l*.safetensors), the VAE (ae.safetensors,
// ae.sft, flux*vae*.safetensors), each "" when none was found. Looked for, in order: the file's
// folder, its parent and the parent's text_encoders/, clip/, vae/ and VAE/ folders (ComfyUI's
// models/ layout), then `models_dir` and the same subfolders of it. Cheap: looks at names only.
struct SplitFiles {
  std::string t5, clip, vae;
  std::vector<std::string> looked_in;
};
SplitFiles find_split_files(const std::string& file, const std::string& models_dir);

// The T5 tokenizer (SentencePiece spiece.model) for a T5 file without one: Loupe's copy
// (<data dir>/tokenizers/t5), the tokenizer_2/ of a FLUX diffusers folder inside `model_folders`,
// or the Hugging Face cache (google/t5-v1_1-xxl, FLUX.1 repositories); "" when none is found.
std::string t5_vocab_cache_dir();
std::string find_t5_vocab(const std::vector<std::string>& model_folders);
// Fetches spiece.model once into t5_vocab_cache_dir() (not in offline mode: NotFound saying so).
std::string fetch_t5_vocab();
const char* t5_vocab_fetch_repo();

}  // namespace loupe::flux_family
