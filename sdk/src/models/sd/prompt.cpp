#include "models/sd/prompt.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "io/config.h"

namespace loupe::sd {

namespace {

constexpr size_t kChunk = 75;
constexpr float kRound = 1.1f;

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Splits plain text on the word BREAK (surrounding whitespace dropped).
void append_plain(std::vector<WeightedText>& res, const std::string& text) {
  size_t start = 0, pos = 0;
  auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  while ((pos = text.find("BREAK", pos)) != std::string::npos) {
    const bool lb = pos == 0 || !word_char(text[pos - 1]);
    const bool rb = pos + 5 >= text.size() || !word_char(text[pos + 5]);
    if (!lb || !rb) { pos += 5; continue; }
    size_t a = pos, b = pos + 5;
    while (a > start && is_space(text[a - 1])) --a;
    while (b < text.size() && is_space(text[b])) ++b;
    res.push_back({text.substr(start, a - start), 1.0f});
    res.push_back({"BREAK", -1.0f});
    start = pos = b;
  }
  res.push_back({text.substr(start), 1.0f});
}

}  // namespace

std::vector<WeightedText> parse_prompt_attention(const std::string& s) {
  std::vector<WeightedText> res;
  std::vector<size_t> round, square;
  auto multiply = [&](size_t from, float m) {
    for (size_t p = from; p < res.size(); ++p) res[p].weight *= m;
  };
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\') {
      if (i + 1 < s.size() && std::string("()[]\\").find(s[i + 1]) != std::string::npos) {
        res.push_back({std::string(1, s[i + 1]), 1.0f});
        i += 2;
      } else {
        res.push_back({"", 1.0f});
        i += 1;
      }
    } else if (c == '(') {
      round.push_back(res.size());
      ++i;
    } else if (c == '[') {
      square.push_back(res.size());
      ++i;
    } else if (c == ':') {
      // ":" weight ")" closes a round bracket with that weight
      size_t j = i + 1;
      while (j < s.size() && is_space(s[j])) ++j;
      size_t k = j;
      if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
      const size_t num_start = j;
      while (k < s.size() && (std::isdigit(static_cast<unsigned char>(s[k])) || s[k] == '.')) ++k;
      size_t e = k;
      while (e < s.size() && is_space(s[e])) ++e;
      const bool has_digits = k > num_start + ((s[num_start] == '+' || s[num_start] == '-') ? 1 : 0);
      if (has_digits && e < s.size() && s[e] == ')') {
        float w = 1.0f;
        try {
          w = std::stof(s.substr(num_start, k - num_start));
        } catch (...) {
          w = 1.0f;
        }
        if (!round.empty()) {
          multiply(round.back(), w);
          round.pop_back();
        } else {
          append_plain(res, s.substr(i, e + 1 - i));
        }
        i = e + 1;
      } else {
        append_plain(res, ":");
        ++i;
      }
    } else if (c == ')' && !round.empty()) {
      multiply(round.back(), kRound);
      round.pop_back();
      ++i;
    } else if (c == ']' && !square.empty()) {
      multiply(square.back(), 1.0f / kRound);
      square.pop_back();
      ++i;
    } else if (c == ')' || c == ']') {
      append_plain(res, std::string(1, c));
      ++i;
    } else {
      size_t j = i;
      while (j < s.size() && std::string("\\()[]:").find(s[j]) == std::string::npos) ++j;
      append_plain(res, s.substr(i, j - i));
      i = j;
    }
  }
  for (size_t p : round) multiply(p, kRound);
  for (size_t p : square) multiply(p, 1.0f / kRound);
  if (res.empty()) res.push_back({"", 1.0f});
  // merge neighbours with equal weights
  std::vector<WeightedText> merged;
  for (auto& r : res) {
    if (!merged.empty() && merged.back().weight == r.weight && r.weight >= 0) merged.back().text += r.text;
    else merged.push_back(r);
  }
  return merged;
}

ClipTokens clip_tokens(const text::BpeTokenizer& tok, const std::string& dir) {
  ClipTokens t;
  t.bos = tok.token_to_id("<|startoftext|>");
  t.eos = tok.token_to_id("<|endoftext|>");
  if (t.bos < 0 || t.eos < 0)
    LOUPE_THROW(BadModel, dir << ": the CLIP tokenizer has no <|startoftext|> / <|endoftext|> tokens");
  t.pad = t.eos;
  // the pad token (SD 2.x pads with "!"), from tokenizer_config.json or special_tokens_map.json
  for (const char* f : {"special_tokens_map.json", "tokenizer_config.json"}) {
    const auto path = (std::filesystem::path(dir) / f).string();
    if (!std::filesystem::exists(path)) continue;
    const auto j = io::read_json_file(path);
    if (!j.contains("pad_token")) continue;
    std::string pad;
    if (j["pad_token"].is_string()) pad = j["pad_token"].get<std::string>();
    else if (j["pad_token"].is_object()) pad = io::get_or<std::string>(j["pad_token"], "content", "", path);
    if (pad.empty()) continue;
    int64_t id = tok.token_to_id(pad);
    if (id < 0) id = tok.token_to_id(pad + "</w>");
    if (id >= 0) t.pad = id;
    break;
  }
  t.comma = tok.token_to_id(",</w>");
  return t;
}

std::vector<PromptChunk> tokenize_prompt(const text::BpeTokenizer& tok, const ClipTokens& ids, const std::string& prompt) {
  std::vector<PromptChunk> chunks;
  std::vector<int64_t> cur;
  std::vector<float> curw;
  int last_comma = -1;
  auto finish = [&] {
    PromptChunk c;
    c.ids.push_back(ids.bos);
    c.weights.push_back(1.0f);
    c.ids.insert(c.ids.end(), cur.begin(), cur.end());
    c.weights.insert(c.weights.end(), curw.begin(), curw.end());
    c.ids.push_back(ids.eos);
    c.weights.push_back(1.0f);
    while (c.ids.size() < kChunk + 2) {
      c.ids.push_back(ids.pad);
      c.weights.push_back(1.0f);
    }
    chunks.push_back(std::move(c));
    cur.clear();
    curw.clear();
    last_comma = -1;
  };
  for (const auto& piece : parse_prompt_attention(prompt)) {
    if (piece.weight < 0) {  // BREAK
      finish();
      continue;
    }
    for (int64_t id : tok.encode(piece.text)) {
      if (id == ids.comma) {
        last_comma = static_cast<int>(cur.size());
      } else if (cur.size() == kChunk && last_comma >= 0 && static_cast<int>(cur.size()) - last_comma <= 20) {
        // split at the last comma: the words after it start the next chunk
        std::vector<int64_t> rest(cur.begin() + last_comma + 1, cur.end());
        std::vector<float> restw(curw.begin() + last_comma + 1, curw.end());
        cur.resize(last_comma + 1);
        curw.resize(last_comma + 1);
        finish();
        cur = rest;
        curw = restw;
      }
      if (cur.size() == kChunk) finish();
      cur.push_back(id);
      curw.push_back(piece.weight);
    }
  }
  if (!cur.empty() || chunks.empty()) finish();
  return chunks;
}

namespace {

// Each chunk through `encode` ([1, 77] ids -> [1, 77, D]), emphasis applied, concatenated.
torch::Tensor encode_chunks(const ClipTokens& ids, std::vector<PromptChunk> chunks, size_t min_chunks,
                            const torch::Device& device, const std::function<torch::Tensor(const torch::Tensor&)>& encode) {
  if (chunks.size() < min_chunks) {
    const auto empty = [&] {
      PromptChunk c;
      c.ids.assign(kChunk + 2, ids.pad);
      c.ids[0] = ids.bos;
      c.ids[1] = ids.eos;
      c.weights.assign(kChunk + 2, 1.0f);
      return c;
    }();
    chunks.resize(min_chunks, empty);
  }
  std::vector<torch::Tensor> parts;
  for (const auto& c : chunks) {
    auto t = torch::tensor(c.ids, torch::kInt64).unsqueeze(0).to(device);
    auto z = encode(t).to(torch::kFloat32);
    bool weighted = false;
    for (float w : c.weights) weighted = weighted || w != 1.0f;
    if (weighted) {
      // emphasis: scale each token's embedding, then restore the chunk's mean
      const auto before = z.mean();
      z = z * torch::tensor(c.weights, torch::kFloat32).to(device).view({1, -1, 1});
      z = z * (before / z.mean());
    }
    parts.push_back(z);
  }
  return torch::cat(parts, 1);
}

}  // namespace

torch::Tensor encode_prompt(clip::ClipTextModel& enc, const ClipTokens& ids, std::vector<PromptChunk> chunks,
                            size_t min_chunks, int clip_skip, const torch::Device& device) {
  return encode_chunks(ids, std::move(chunks), min_chunks, device,
                       [&](const torch::Tensor& t) { return enc->forward(t, clip_skip); });
}

DualEncoding encode_prompt_dual(clip::ClipTextModel& enc1, const ClipTokens& ids1, std::vector<PromptChunk> chunks1,
                                clip::ClipTextModel& enc2, const ClipTokens& ids2, std::vector<PromptChunk> chunks2,
                                size_t min_chunks, int clip_skip, const torch::Device& device) {
  const size_t n = std::max({min_chunks, chunks1.size(), chunks2.size()});
  auto layer = [&](const clip::ClipTextModel& enc) {
    const int l = enc->cfg.num_hidden_layers - clip_skip;
    if (clip_skip < 1 || l < 0)
      LOUPE_THROW(InvalidArgument, "clip_skip = " << clip_skip << " is out of range [1, " << enc->cfg.num_hidden_layers << "]");
    return l;
  };
  const int l2 = layer(enc2);
  DualEncoding out;
  torch::Tensor z1;  // none for the refiner (encoder 2 alone)
  if (!enc1.is_empty()) {
    const int l1 = layer(enc1);
    z1 = encode_chunks(ids1, std::move(chunks1), n, device,
                       [&](const torch::Tensor& t) { return enc1->hidden_and_pooled(t, l1, false).hidden; });
  }
  auto z2 = encode_chunks(ids2, std::move(chunks2), n, device, [&](const torch::Tensor& t) {
    auto o = enc2->hidden_and_pooled(t, l2, !out.pooled.defined());
    if (!out.pooled.defined()) out.pooled = o.pooled.to(torch::kFloat32);  // the first chunk's
    return o.hidden;
  });
  out.embeds = z1.defined() ? torch::cat({z1, z2}, -1) : z2;
  return out;
}

}  // namespace loupe::sd
