#include "models/florence2/processor.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "core/error.h"

namespace loupe::florence2 {

namespace {

constexpr int kBins = 1000;

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

std::string strip_specials(const std::string& s) {
  return replace_all(replace_all(replace_all(s, "<s>", ""), "</s>", ""), "<pad>", "");
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\n\r\f\v");
  if (a == std::string::npos) return "";
  const auto b = s.find_last_not_of(" \t\n\r\f\v");
  return s.substr(a, b - a + 1);
}

std::string ascii_only(const std::string& s) {
  std::string out;
  for (unsigned char c : s)
    if (c < 0x80) out.push_back(static_cast<char>(c));
  return out;
}

// Bin centre in pixels, truncated to an integer (the reference dequantises then calls .int()).
float dequant(int bin, int size) { return static_cast<float>(static_cast<int>((bin + 0.5) * (double(size) / kBins))); }

int quant(float v, int size) {
  const int q = static_cast<int>(std::floor(v / (double(size) / kBins)));
  return std::clamp(q, 0, kBins - 1);
}

std::vector<int> loc_bins(const std::string& s) {
  static const std::regex loc("<loc_(\\d+)>");
  std::vector<int> out;
  for (std::sregex_iterator it(s.begin(), s.end(), loc), end; it != end; ++it) out.push_back(std::stoi((*it)[1]));
  return out;
}

// "phrase<loc_a><loc_b><loc_c><loc_d>..." -> label and boxes (one per 4 bins)
const std::regex kTextBefore("^\\s*([\\s\\S]*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)");

void parse_boxes(const std::string& text_in, int w, int h, bool allow_empty, const BannedPhrases* banned, Result& out) {
  const std::string text = strip_specials(text_in);
  static const std::regex with_phrase("([^<]+(?:<loc_\\d+>){4,})");
  static const std::regex no_phrase("((?:<loc_\\d+>){4,})");
  static const std::regex box("<loc_(\\d+)><loc_(\\d+)><loc_(\\d+)><loc_(\\d+)>");
  const std::regex& phrase_re = allow_empty ? no_phrase : with_phrase;
  for (std::sregex_iterator it(text.begin(), text.end(), phrase_re), end; it != end; ++it) {
    std::string phrase_text = (*it)[1];
    for (const char* tag : {"<ground>", "<obj>"}) {
      auto p = phrase_text.find(tag);
      if (p != std::string::npos) phrase_text.erase(p, std::strlen(tag));
    }
    if (phrase_text.empty() && !allow_empty) continue;
    std::smatch m;
    if (!std::regex_search(phrase_text, m, kTextBefore)) continue;
    const std::string label = ascii_only(trim(m[1]));
    if (banned && std::find(banned->begin(), banned->end(), trim(m[1])) != banned->end()) continue;
    for (std::sregex_iterator b(phrase_text.begin(), phrase_text.end(), box); b != end; ++b) {
      Box bx;
      bx.x0 = dequant(std::stoi((*b)[1]), w);
      bx.y0 = dequant(std::stoi((*b)[2]), h);
      bx.x1 = dequant(std::stoi((*b)[3]), w);
      bx.y1 = dequant(std::stoi((*b)[4]), h);
      bx.label = label;
      out.boxes.push_back(bx);
    }
  }
}

void parse_polygons(const std::string& text_in, int w, int h, bool allow_empty, Result& out) {
  const std::string text = strip_specials(text_in);
  static const std::regex with_phrase("([^<]+(?:<loc_\\d+>|<sep>|<poly>|</poly>){4,})");
  static const std::regex no_phrase("((?:<loc_\\d+>|<sep>|<poly>|</poly>){4,})");
  static const std::regex phrase_re("^\\s*([\\s\\S]*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>)");
  static const std::regex poly_inst("<poly>([\\s\\S]*?)</poly>");
  static const std::regex poly_part("((?:<loc_\\d+>)+)(?:<sep>|$)");
  static const std::regex first_loc("^<loc_\\d+>");
  int group = static_cast<int>(out.polygons.empty() ? 0 : out.polygons.back().group + 1);
  const std::sregex_iterator end;
  for (std::sregex_iterator it(text.begin(), text.end(), allow_empty ? no_phrase : with_phrase); it != end; ++it) {
    const std::string phrase_text = (*it)[1];
    const std::string stripped = std::regex_replace(phrase_text, first_loc, "", std::regex_constants::format_first_only);
    if (stripped.empty() && !allow_empty) continue;
    std::smatch m;
    if (!std::regex_search(stripped, m, phrase_re)) continue;
    const std::string label = trim(m[1]);
    std::vector<std::string> instances;
    if (phrase_text.find("<poly>") != std::string::npos && phrase_text.find("</poly>") != std::string::npos) {
      for (std::sregex_iterator p(phrase_text.begin(), phrase_text.end(), poly_inst); p != end; ++p) instances.push_back((*p)[1]);
    } else {
      instances.push_back(phrase_text);
    }
    for (const auto& inst : instances) {
      bool any = false;
      for (std::sregex_iterator p(inst.begin(), inst.end(), poly_part); p != end; ++p) {
        std::vector<int> bins = loc_bins((*p)[1]);
        if (bins.size() % 2) bins.pop_back();
        Polygon poly;
        poly.label = label;
        poly.group = group;
        for (size_t k = 0; k < bins.size(); k += 2) {
          poly.points.push_back(dequant(bins[k], w));
          poly.points.push_back(dequant(bins[k + 1], h));
        }
        out.polygons.push_back(poly);
        any = true;
      }
      if (any) ++group;
    }
  }
}

void parse_ocr(const std::string& text_in, int w, int h, Result& out) {
  const std::string text = strip_specials(text_in);
  static const std::regex quad("([\\s\\S]+?)<loc_(\\d+)><loc_(\\d+)><loc_(\\d+)><loc_(\\d+)><loc_(\\d+)><loc_(\\d+)><loc_(\\d+)><loc_(\\d+)>");
  std::string all;
  int group = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), quad), end; it != end; ++it) {
    Polygon p;
    p.kind = "quad";
    p.label = trim((*it)[1]);
    p.group = group++;
    for (int k = 0; k < 8; ++k) p.points.push_back(dequant(std::stoi((*it)[2 + k]), k % 2 == 0 ? w : h));
    all += (all.empty() ? "" : "\n") + p.label;
    out.polygons.push_back(p);
  }
  out.text = all;
}

}  // namespace

const std::vector<TaskSpec>& tasks() {
  static const std::vector<TaskSpec> t = {
      {"caption", "<CAPTION>", "What does the image describe?", "pure_text", TaskSpec::None},
      {"detailed_caption", "<DETAILED_CAPTION>", "Describe in detail what is shown in the image.", "pure_text", TaskSpec::None},
      {"more_detailed_caption", "<MORE_DETAILED_CAPTION>", "Describe with a paragraph what is shown in the image.", "pure_text", TaskSpec::None},
      {"detect", "<OD>", "Locate the objects with category name in the image.", "description_with_bboxes", TaskSpec::None},
      {"dense_caption", "<DENSE_REGION_CAPTION>", "Locate the objects in the image, with their descriptions.", "description_with_bboxes", TaskSpec::None},
      {"region_proposal", "<REGION_PROPOSAL>", "Locate the region proposals in the image.", "bboxes", TaskSpec::None},
      {"ground", "<CAPTION_TO_PHRASE_GROUNDING>", "Locate the phrases in the caption: {input}", "phrase_grounding", TaskSpec::Text},
      {"segment", "<REFERRING_EXPRESSION_SEGMENTATION>", "Locate {input} in the image with mask", "polygons", TaskSpec::Text},
      {"region_segment", "<REGION_TO_SEGMENTATION>", "What is the polygon mask of region {input}", "polygons", TaskSpec::Region},
      {"open_vocabulary_detect", "<OPEN_VOCABULARY_DETECTION>", "Locate {input} in the image.", "description_with_bboxes_or_polygons", TaskSpec::Text},
      {"region_category", "<REGION_TO_CATEGORY>", "What is the region {input}?", "pure_text", TaskSpec::Region},
      {"region_caption", "<REGION_TO_DESCRIPTION>", "What does the region {input} describe?", "pure_text", TaskSpec::Region},
      {"ocr", "<OCR>", "What is the text in the image?", "pure_text", TaskSpec::None},
      {"ocr_regions", "<OCR_WITH_REGION>", "What is the text in the image, with regions?", "ocr", TaskSpec::None},
  };
  return t;
}

const TaskSpec* find_task(const std::string& abi_task) {
  for (const auto& t : tasks())
    if (abi_task == t.abi_task) return &t;
  return nullptr;
}

std::string build_prompt(const TaskSpec& t, const std::string& text, const std::array<float, 4>* region, int w, int h) {
  std::string input;
  if (t.input == TaskSpec::Text) {
    input = trim(text);
    if (input.empty())
      LOUPE_THROW(InvalidArgument, "task '" << t.abi_task << "' needs a text: set the string \"text\" (e.g. \"a red car\")");
  } else if (t.input == TaskSpec::Region) {
    if (!region)
      LOUPE_THROW(InvalidArgument, "task '" << t.abi_task << "' needs a region: call loupe_request_set_region with a box in pixels");
    const auto& r = *region;
    input = "<loc_" + std::to_string(quant(r[0], w)) + "><loc_" + std::to_string(quant(r[1], h)) + "><loc_" +
            std::to_string(quant(r[2], w)) + "><loc_" + std::to_string(quant(r[3], h)) + ">";
  }
  return replace_all(t.prompt, "{input}", input);
}

void parse(const TaskSpec& t, const std::string& generated, int w, int h, Result& out, const BannedPhrases& banned) {
  const std::string type = t.parse;
  if (type == "pure_text") {
    out.text = trim(strip_specials(generated));
  } else if (type == "description_with_bboxes") {
    parse_boxes(generated, w, h, false, nullptr, out);
  } else if (type == "bboxes") {
    parse_boxes(generated, w, h, true, nullptr, out);
  } else if (type == "phrase_grounding") {
    parse_boxes(generated, w, h, false, &banned, out);
  } else if (type == "polygons") {
    parse_polygons(generated, w, h, true, out);
  } else if (type == "description_with_bboxes_or_polygons") {
    if (generated.find("<poly>") != std::string::npos) parse_polygons(generated, w, h, false, out);
    else parse_boxes(generated, w, h, false, nullptr, out);
  } else if (type == "ocr") {
    parse_ocr(generated, w, h, out);
  }
  if (out.text.empty() && type != "pure_text") out.text = trim(strip_specials(std::regex_replace(generated, std::regex("<[^>]*>"), "")));
}

}  // namespace loupe::florence2
