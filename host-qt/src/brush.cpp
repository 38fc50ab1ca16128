#include "brush.h"

#include <QLineF>
#include <algorithm>
#include <cmath>

namespace loupe {

double brushCoverage(const Brush& brush, double distance) {
  const double radius = std::max(brush.diameter / 2.0, 0.5);
  const double d = distance / radius;
  if (d >= 1.0) return 0.0;
  const double hardness = std::clamp(brush.hardness, 0.0, 1.0);
  if (d <= hardness) return 1.0;
  // Smooth fall-off from the hard core to the rim.
  const double t = (d - hardness) / (1.0 - hardness);
  return 1.0 - t * t * (3.0 - 2.0 * t);
}

QRect paintDab(QImage& mask, const QPointF& center, const Brush& brush) {
  const double radius = std::max(brush.diameter / 2.0, 0.5);
  const QRect bounds =
      QRect(QPoint(int(std::floor(center.x() - radius)), int(std::floor(center.y() - radius))),
            QPoint(int(std::ceil(center.x() + radius)), int(std::ceil(center.y() + radius))))
          .intersected(mask.rect());
  QRect changed;
  for (int y = bounds.top(); y <= bounds.bottom(); ++y) {
    uchar* row = mask.scanLine(y);
    for (int x = bounds.left(); x <= bounds.right(); ++x) {
      const double coverage = brushCoverage(brush, std::hypot(x + 0.5 - center.x(), y + 0.5 - center.y()));
      if (coverage <= 0.0) continue;
      const int value = int(std::lround(coverage * 255.0));
      const uchar before = row[x];
      const uchar after = brush.erase ? uchar(std::min<int>(before, 255 - value))
                                      : uchar(std::max<int>(before, value));
      if (after != before) {
        row[x] = after;
        changed |= QRect(x, y, 1, 1);
      }
    }
  }
  return changed;
}

QList<QPointF> dabsAlong(const QPointF& from, const QPointF& to, const Brush& brush) {
  const double spacing = std::max(1.0, brush.diameter * 0.15);
  const double length = QLineF(from, to).length();
  const int steps = std::max(1, int(std::ceil(length / spacing)));
  QList<QPointF> dabs;
  dabs.reserve(steps);
  for (int i = 1; i <= steps; ++i) dabs << from + (to - from) * (double(i) / steps);
  return dabs;
}

}  // namespace loupe
