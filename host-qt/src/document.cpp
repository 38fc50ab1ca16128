#include "document.h"

#include <QPainter>
#include <QUndoCommand>
#include <cstring>
#include <optional>
#include <utility>

namespace loupe {

namespace {

QImage emptyMask(const QSize& size) {
  QImage mask(size, QImage::Format_Grayscale8);
  mask.fill(0);
  return mask;
}

// The mask that goes with a new current image: kept when the size matches, scaled otherwise.
QImage maskFor(const QImage& mask, const QSize& size) {
  if (mask.size() == size) return mask;
  if (mask.isNull()) return emptyMask(size);
  return mask.scaled(size, Qt::IgnoreAspectRatio, Qt::FastTransformation);
}

}  // namespace

// Replaces one rectangle of the mask: `before` on undo, `after` on redo.
class MaskPatchCommand : public QUndoCommand {
 public:
  MaskPatchCommand(Document* doc, const QRect& area, QImage before, QImage after, const QString& text,
                   bool alreadyApplied)
      : QUndoCommand(text), m_doc(doc), m_area(area), m_before(std::move(before)),
        m_after(std::move(after)), m_skipFirstRedo(alreadyApplied) {}
  void undo() override { m_doc->putMaskPatch(m_area, m_before); }
  void redo() override {
    if (m_skipFirstRedo) {
      m_skipFirstRedo = false;
      return;
    }
    m_doc->putMaskPatch(m_area, m_after);
  }

 private:
  Document* m_doc;
  QRect m_area;
  QImage m_before, m_after;
  bool m_skipFirstRedo;
};

// Changes the current version (and, when adding, appends one). Stores both masks because a size
// change scales the mask.
class VersionCommand : public QUndoCommand {
 public:
  VersionCommand(Document* doc, int to, std::optional<Document::Version> added, const QString& text)
      : QUndoCommand(text), m_doc(doc), m_from(doc->currentVersion()), m_to(to),
        m_added(std::move(added)), m_maskBefore(doc->mask()) {
    const QSize size = m_added ? m_added->image.size() : doc->versions().at(to).image.size();
    m_maskAfter = maskFor(m_maskBefore, size);
  }
  void redo() override {
    if (m_added) {
      m_doc->m_versions.append(*m_added);
      emit m_doc->versionsChanged();
    }
    m_doc->applyVersionState(m_to, m_maskAfter);
  }
  void undo() override {
    if (m_added) {
      m_doc->m_versions.removeLast();
      emit m_doc->versionsChanged();
    }
    m_doc->applyVersionState(m_from, m_maskBefore);
  }

 private:
  Document* m_doc;
  int m_from, m_to;
  std::optional<Document::Version> m_added;
  QImage m_maskBefore, m_maskAfter;
};

Document::Document(QObject* parent) : QObject(parent) {}

void Document::reset(const QImage& image, const QString& path) {
  m_undo.clear();
  m_stroke = {};
  m_path = path;
  m_versions.clear();
  m_overlays.clear();
  m_selectedOverlay = -1;
  if (image.isNull()) {
    m_current = -1;
    m_mask = {};
  } else {
    m_versions.append({image.convertToFormat(QImage::Format_ARGB32), tr("Original")});
    m_current = 0;
    m_mask = emptyMask(image.size());
  }
  emit documentReset();
}

QImage Document::image() const { return m_current >= 0 ? m_versions.at(m_current).image : QImage(); }

void Document::addVersion(const QImage& image, const QString& description) {
  if (image.isNull()) return;
  Version version{image.convertToFormat(QImage::Format_ARGB32), description};
  m_undo.push(new VersionCommand(this, int(m_versions.size()), std::move(version),
                                 tr("New version: %1").arg(description)));
}

void Document::switchVersion(int index) {
  if (index < 0 || index >= m_versions.size() || index == m_current) return;
  m_undo.push(new VersionCommand(this, index, std::nullopt,
                                 tr("Switch to version %1").arg(index + 1)));
}

void Document::applyVersionState(int current, const QImage& mask) {
  const bool sizeChanged = image().size() != m_versions.at(current).image.size();
  m_current = current;
  m_mask = mask;
  if (sizeChanged && !m_overlays.isEmpty()) clearOverlays();
  emit imageChanged();
  emit maskChanged(m_mask.rect());
}

bool Document::setMask(const QImage& mask, const QString& text) {
  if (isEmpty() || mask.size() != m_mask.size()) return false;
  m_undo.push(new MaskPatchCommand(this, m_mask.rect(), m_mask,
                                   mask.convertToFormat(QImage::Format_Grayscale8), text, false));
  return true;
}

void Document::fillMask() {
  if (isEmpty()) return;
  QImage mask = emptyMask(m_mask.size());
  mask.fill(255);
  setMask(mask, tr("Fill mask"));
}

void Document::clearMask() {
  if (!isEmpty()) setMask(emptyMask(m_mask.size()), tr("Clear mask"));
}

void Document::invertMask() {
  if (isEmpty()) return;
  QImage mask = m_mask.copy();
  mask.invertPixels();
  setMask(mask, tr("Invert mask"));
}

QImage Document::overlayMask(const Overlay& overlay, const QSize& size) {
  QImage mask = emptyMask(size);
  QPainter painter(&mask);
  painter.setRenderHint(QPainter::Antialiasing, false);
  if (overlay.kind == Overlay::Kind::Box) {
    // Exactly the pixels whose centres are inside the box.
    const QRectF r = overlay.points.boundingRect();
    const QRect pixels(QPoint(qRound(r.left()), qRound(r.top())),
                       QPoint(qRound(r.right()) - 1, qRound(r.bottom()) - 1));
    painter.fillRect(pixels, Qt::white);
  } else {
    painter.setPen(Qt::NoPen);
    painter.setBrush(Qt::white);
    painter.drawPolygon(overlay.points);
  }
  return mask;
}

bool Document::useOverlayAsMask(int index) {
  if (isEmpty() || index < 0 || index >= m_overlays.size()) return false;
  const Overlay& overlay = m_overlays.at(index);
  const QString name = overlay.label.isEmpty() ? tr("overlay") : overlay.label;
  return setMask(overlayMask(overlay, m_mask.size()), tr("Use %1 as mask").arg(name));
}

void Document::putMaskPatch(const QRect& area, const QImage& patch) {
  if (area == m_mask.rect()) {
    m_mask = patch;
  } else {
    for (int y = 0; y < area.height(); ++y)
      std::memcpy(m_mask.scanLine(area.top() + y) + area.left(), patch.constScanLine(y), size_t(area.width()));
  }
  emit maskChanged(area);
}

void Document::beginMaskStroke() {
  if (isEmpty()) return;
  m_stroke = {};
  m_stroke.active = true;
  m_stroke.before = m_mask;
}

void Document::strokeMaskTo(const QPointF& point, const Brush& brush) {
  if (!m_stroke.active) return;
  const QList<QPointF> dabs =
      m_stroke.hasPoint ? dabsAlong(m_stroke.last, point, brush) : QList<QPointF>{point};
  QRect changed;
  for (const QPointF& dab : dabs) changed |= paintDab(m_mask, dab, brush);
  m_stroke.last = point;
  m_stroke.hasPoint = true;
  if (!changed.isEmpty()) {
    m_stroke.changed |= changed;
    emit maskChanged(changed);
  }
}

void Document::endMaskStroke(const QString& text) {
  if (!m_stroke.active) return;
  const Stroke stroke = std::exchange(m_stroke, {});
  if (stroke.changed.isEmpty()) return;
  m_undo.push(new MaskPatchCommand(this, stroke.changed, stroke.before.copy(stroke.changed),
                                   m_mask.copy(stroke.changed), text, true));
  emit maskChanged(stroke.changed);  // the stroke as a whole, now that it is finished
}

void Document::addOverlays(const QList<Overlay>& overlays) {
  if (overlays.isEmpty()) return;
  m_overlays += overlays;
  emit overlaysChanged();
}

void Document::clearOverlays() {
  m_overlays.clear();
  m_selectedOverlay = -1;
  emit overlaysChanged();
  emit overlaySelectionChanged();
}

void Document::setSelectedOverlay(int index) {
  if (index < -1 || index >= m_overlays.size()) index = -1;
  if (index == m_selectedOverlay) return;
  m_selectedOverlay = index;
  emit overlaySelectionChanged();
}

}  // namespace loupe
