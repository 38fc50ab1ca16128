// PaliGemma's detect / segment output -> boxes, labels, masks and outlines in image pixels.
//
// The text format (big_vision's PaliGemma README: 1024 <locNNNN> tokens for normalised image
// coordinates, 128 <segNNN> codewords of the mask VQ-VAE): per object
//   <locY0><locX0><locY1><locX1>[<segNNN> x 16] label
// objects separated by " ; ". Parsed exactly as the published parser of the PaliGemma authors
// (extract_objs in the google/paligemma-hf demo: the same regular expression, pixel =
// round(bin / 1024 * size) with Python's round-half-even), so results equal the demo's. The model
// sees the image squashed to a square, so bins map straight onto the ORIGINAL image's width and height.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/types.h"
#include "models/paligemma/mask_decoder.h"

namespace loupe::paligemma {

struct LocObject {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // box in original-image pixels (empty when x1 <= x0 or y1 <= y0)
  std::string label;                  // the label, whitespace-trimmed ("" when the text has none)
  std::vector<int64_t> seg;           // the 16 <segNNN> codes (as written, 0..999), or empty
  std::string content;                // the text this object was parsed from (after any text before it)
};

// Text (without the prompt; <loc>/<seg> tokens kept as text) -> objects, in order. Follows the
// reference's regular expression: text between objects is skipped (a run of fewer than 16 <seg>
// tokens leaves an object without mask, and the stray tokens are skipped), the scan stops at a line
// break before the next object. Unlike the reference (whose boxes then leave the image), objects with
// a <loc> bin over 1023 are dropped, as big_vision's evaluator counts them invalid.
std::vector<LocObject> parse_loc_objects(const std::string& text, int image_w, int image_h);

// Whether an object's codes can be decoded: 16 codes, each below num_codes. (An object with an empty
// box still gets a mask, all 0, as the reference gives.)
bool has_decodable_mask(const LocObject& o, int64_t num_codes = 128);

struct Segment {
  LocObject object;
  // image_w x image_h, 1 channel: the decoded 64x64 mask, as uint8(clip(m * 0.5 + 0.5, 0, 1) * 255),
  // resized into the box with PIL's default resize (BICUBIC) and pasted there, 0 elsewhere (the
  // reference's mask * 255). Empty (0x0) when the object has no decodable mask.
  Image mask;
};

// The 64x64 masks of every object with a decodable mask (one decoder batch), pasted into the image.
std::vector<Segment> decode_segments(const std::vector<LocObject>& objs, const MaskDecoder& decoder, int image_w,
                                     int image_h);

// One decoded 64x64 mask (float, decoder output) pasted into an image_w x image_h mask, as above.
Image paste_mask(const torch::Tensor& mask64, const LocObject& o, int image_w, int image_h);

// Outer outlines of mask > 127 (one polygon per connected region of 3+ corners; points are pixel
// centres, x, y in image pixels).
std::vector<Polygon> mask_outlines(const Image& mask, const std::string& label, int group);

// Result filling: a box (score 1, label) per object, in order.
void append_detections(Result& out, const std::vector<LocObject>& objs);
// Boxes as above; images[i] is the W x H GRAY8 mask of boxes[i] (all 0 when it has none); polygons:
// the outlines of each mask, group = the index of its box.
void append_segments(Result& out, const std::vector<Segment>& segs, int image_w, int image_h);

}  // namespace loupe::paligemma
