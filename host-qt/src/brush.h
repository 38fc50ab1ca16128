// Mask brush: soft round dabs composited so that overlapping dabs of one stroke never accumulate
// past the brush's own coverage (paint takes the max, erase the min).
#pragma once

#include <QImage>
#include <QPointF>
#include <QRect>

namespace loupe {

struct Brush {
  double diameter = 40;  // image pixels
  double hardness = 0.8; // 0 = soft to the centre, 1 = hard edge
  bool erase = false;
};

// Coverage in [0, 1] of a pixel whose centre lies `distance` pixels from the dab centre.
double brushCoverage(const Brush& brush, double distance);

// Paints one dab centred at `center` (image coordinates) into `mask` (Grayscale8).
// Returns the changed area (clipped to the mask), empty when nothing changed.
QRect paintDab(QImage& mask, const QPointF& center, const Brush& brush);

// Centres of the dabs that cover the segment from `from` (excluded) to `to` (included).
QList<QPointF> dabsAlong(const QPointF& from, const QPointF& to, const Brush& brush);

}  // namespace loupe
