// Edit by words (task "edit"): find what a phrase names with a finder session (Florence-2's
// referring-expression segmentation, else its boxes), turn the regions into a mask, grow it, and
// inpaint only the masked area with a painter session. The chain itself is loupe::edit::run
// (core/edit.h); these are its mask pieces, kept apart so tests can check them.
//
// The mask, as documented in the task table and loupe.h:
//  - a pixel belongs to a polygon when its centre (x + 0.5, y + 0.5) is inside it (even-odd rule,
//    a crossing counts for edges with y0 <= cy < y1); to a box when x0 <= cx < x1 and y0 <= cy < y1;
//    the mask is the union over every region found (255 = repaint);
//  - grown by `grow` pixels: a pixel is in the grown mask when the Euclidean distance between its
//    centre and the centre of a found pixel is at most `grow`;
//  - the painter repaints inside it and blends inwards over `feather` pixels (the inpaint task's
//    compositing), so pixels outside the mask keep their exact bytes.
#pragma once
#include <vector>

#include "core/types.h"

namespace loupe::pipelines {

// GRAY8 mask of width x height: the union of the polygons and boxes (rules above).
Image region_mask(const std::vector<Polygon>& polygons, const std::vector<Box>& boxes, int width, int height);
// The mask (>= 128 = in) grown by `radius` pixels (exact Euclidean distance transform); 0/255.
Image grow_mask(const Image& mask, int radius);
// Number of mask pixels >= 128.
size_t mask_area(const Image& mask);

}  // namespace loupe::pipelines
