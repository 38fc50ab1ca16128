#include "canvas.h"

#include <QContextMenuEvent>
#include <QGraphicsEllipseItem>
#include <QGraphicsPixmapItem>
#include <QGraphicsScene>
#include <QMenu>
#include <QPainter>
#include <QScrollBar>
#include <QStyleOptionGraphicsItem>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>

#include "document.h"

namespace loupe {

namespace {

constexpr double kMinZoom = 0.02;
constexpr double kMaxZoom = 64.0;
constexpr qreal kMaskZ = 1, kOverlayZ = 10, kOutlineZ = 1000;

QColor overlayColor(const QString& label) {
  const int hue = int(qHash(label) % 360);
  return QColor::fromHsv(hue, 200, 255);
}

}  // namespace

// The mask drawn as a tinted, semi-transparent layer over the image.
class MaskItem : public QGraphicsItem {
 public:
  MaskItem() {
    const QColor tint(255, 30, 90);
    for (int v = 0; v < 256; ++v)
      m_lut[v] = qPremultiply(qRgba(tint.red(), tint.green(), tint.blue(), v * 120 / 255));
  }
  void setMask(const QImage& mask) {
    prepareGeometryChange();
    m_tint = QImage(mask.size(), QImage::Format_ARGB32_Premultiplied);
    updateArea(mask, mask.rect());
  }
  void updateArea(const QImage& mask, const QRect& area) {
    if (mask.size() != m_tint.size()) return setMask(mask);
    const QRect r = area.intersected(mask.rect());
    for (int y = r.top(); y <= r.bottom(); ++y) {
      const uchar* src = mask.constScanLine(y);
      auto* dst = reinterpret_cast<QRgb*>(m_tint.scanLine(y));
      for (int x = r.left(); x <= r.right(); ++x) dst[x] = m_lut[src[x]];
    }
    update(r);
  }
  QRectF boundingRect() const override { return QRectF(m_tint.rect()); }
  void paint(QPainter* painter, const QStyleOptionGraphicsItem* option, QWidget*) override {
    const QRectF exposed = option->exposedRect.intersected(boundingRect());
    painter->drawImage(exposed, m_tint, exposed);
  }

 private:
  QImage m_tint;
  QRgb m_lut[256];
};

// "label 0.93" on a coloured tag, drawn at screen size whatever the zoom.
class LabelItem : public QGraphicsItem {
 public:
  LabelItem(const QString& text, const QColor& color, QGraphicsItem* parent)
      : QGraphicsItem(parent), m_text(text), m_color(color) {
    setFlag(ItemIgnoresTransformations);
    const QFontMetrics metrics(m_font);
    m_rect = QRectF(0, -metrics.height() - 4, metrics.horizontalAdvance(m_text) + 8, metrics.height() + 4);
  }
  QRectF boundingRect() const override { return m_rect; }
  void paint(QPainter* painter, const QStyleOptionGraphicsItem*, QWidget*) override {
    painter->fillRect(m_rect, m_color);
    painter->setPen(Qt::black);
    painter->setFont(m_font);
    painter->drawText(m_rect, Qt::AlignCenter, m_text);
  }

 private:
  QString m_text;
  QColor m_color;
  QFont m_font;
  QRectF m_rect;
};

// One overlay: a box, polygon or quad outline, selectable, with its label.
class OverlayItem : public QGraphicsItem {
 public:
  OverlayItem(const Overlay& overlay, int index) : m_polygon(overlay.points), m_index(index) {
    m_color = overlayColor(overlay.label);
    setFlag(ItemIsSelectable);
    // Smaller shapes above larger ones so every one can be picked.
    const QRectF r = m_polygon.boundingRect();
    setZValue(kOverlayZ + 1.0 / (1.0 + r.width() * r.height()));
    QString text = overlay.label;
    if (overlay.score >= 0) text += QStringLiteral(" %1").arg(overlay.score, 0, 'f', 2);
    if (!text.trimmed().isEmpty()) {
      auto* label = new LabelItem(text.trimmed(), m_color, this);
      label->setPos(r.topLeft());
    }
  }
  int index() const { return m_index; }
  QRectF boundingRect() const override { return m_polygon.boundingRect(); }
  QPainterPath shape() const override {
    QPainterPath path;
    path.addPolygon(m_polygon);
    path.closeSubpath();
    return path;
  }
  void paint(QPainter* painter, const QStyleOptionGraphicsItem*, QWidget*) override {
    QPen pen(m_color, isSelected() ? 3 : 2);
    pen.setCosmetic(true);
    painter->setPen(pen);
    QColor fill = m_color;
    fill.setAlpha(isSelected() ? 40 : 0);
    painter->setBrush(fill);
    painter->drawPolygon(m_polygon);
  }

 private:
  QPolygonF m_polygon;
  int m_index;
  QColor m_color;
};

Canvas::Canvas(Document* document, QWidget* parent)
    : QGraphicsView(parent), m_doc(document), m_imageItem(new QGraphicsPixmapItem),
      m_maskItem(new MaskItem), m_brushOutline(new QGraphicsEllipseItem) {
  auto* scene = new QGraphicsScene(this);
  setScene(scene);
  scene->addItem(m_imageItem);
  m_maskItem->setZValue(kMaskZ);
  scene->addItem(m_maskItem);
  QPen outlinePen(QColor(255, 255, 255, 220), 1, Qt::DashLine);
  outlinePen.setCosmetic(true);
  m_brushOutline->setPen(outlinePen);
  m_brushOutline->setZValue(kOutlineZ);
  m_brushOutline->setVisible(false);
  scene->addItem(m_brushOutline);

  setBackgroundBrush(QColor(48, 48, 52));
  setTransformationAnchor(NoAnchor);
  setResizeAnchor(AnchorViewCenter);
  setViewportUpdateMode(FullViewportUpdate);
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  setAcceptDrops(false);  // the main window opens dropped files

  connect(m_doc, &Document::documentReset, this, &Canvas::rebuild);
  connect(m_doc, &Document::imageChanged, this, &Canvas::updateImage);
  connect(m_doc, &Document::maskChanged, this,
          [this](const QRect& area) { m_maskItem->updateArea(m_doc->mask(), area); });
  connect(m_doc, &Document::overlaysChanged, this, &Canvas::rebuildOverlays);
  connect(m_doc, &Document::overlaySelectionChanged, this, &Canvas::syncSelectionFromDocument);
  connect(scene, &QGraphicsScene::selectionChanged, this, &Canvas::syncSelectionToDocument);
  rebuild();
  updateCursor();
}

// The scene (a child) outlives this body and deselects its items as it dies: stop listening first.
Canvas::~Canvas() { scene()->disconnect(this); }

void Canvas::setTool(Tool tool) {
  if (tool == m_tool) return;
  m_tool = tool;
  if (!paintsMask()) m_brushOutline->setVisible(false);
  updateCursor();
  emit toolChanged(tool);
}

void Canvas::setBrushDiameter(double diameter) {
  diameter = std::clamp(diameter, 1.0, 1000.0);
  if (diameter == m_brushDiameter) return;
  m_brushDiameter = diameter;
  m_brushOutline->setRect(QRectF(-diameter / 2, -diameter / 2, diameter, diameter));
  emit brushDiameterChanged(diameter);
}

void Canvas::setBrushHardness(double hardness) { m_brushHardness = std::clamp(hardness, 0.0, 1.0); }

Brush Canvas::currentBrush() const { return {m_brushDiameter, m_brushHardness, m_tool == Tool::Eraser}; }

void Canvas::zoomAround(double zoom, const QPointF& viewPos) {
  zoom = std::clamp(zoom, kMinZoom, kMaxZoom);
  const QPointF anchor = toImage(viewPos);
  setTransform(QTransform::fromScale(zoom, zoom));
  const QPointF drift = viewportTransform().map(anchor) - viewPos;
  horizontalScrollBar()->setValue(horizontalScrollBar()->value() + qRound(drift.x()));
  verticalScrollBar()->setValue(verticalScrollBar()->value() + qRound(drift.y()));
  emit zoomChanged(zoom);
}

void Canvas::zoomBy(double factor) {
  m_autoFit = false;
  zoomAround(zoom() * factor, QRectF(viewport()->rect()).center());
}

void Canvas::fitToWindow() {
  m_autoFit = true;
  if (m_doc->isEmpty()) return;
  fitInView(m_imageItem->boundingRect(), Qt::KeepAspectRatio);
  emit zoomChanged(zoom());
}

void Canvas::zoomActualSize() {
  m_autoFit = false;
  zoomAround(1.0, QRectF(viewport()->rect()).center());
}

void Canvas::setOverlaysVisible(bool visible) {
  m_overlaysVisible = visible;
  for (OverlayItem* item : m_overlayItems) item->setVisible(visible);
}

int Canvas::overlayAt(const QPoint& viewPos) const {
  for (QGraphicsItem* item : items(viewPos)) {
    for (QGraphicsItem* it = item; it; it = it->parentItem())
      if (auto* overlay = dynamic_cast<OverlayItem*>(it); overlay && overlay->isVisible())
        return overlay->index();
  }
  return -1;
}

QPointF Canvas::toImage(const QPointF& viewPos) const { return viewportTransform().inverted().map(viewPos); }

void Canvas::rebuild() {
  m_maskItem->setMask(m_doc->mask());
  updateImage();
  rebuildOverlays();
  fitToWindow();
}

void Canvas::updateImage() {
  const QImage image = m_doc->image();
  const bool sizeChanged = image.size() != m_imageItem->pixmap().size();
  m_imageItem->setPixmap(QPixmap::fromImage(image));
  if (sizeChanged) {
    scene()->setSceneRect(QRectF(image.rect()));
    if (m_autoFit) fitToWindow();
  }
}

void Canvas::rebuildOverlays() {
  m_syncingSelection = true;  // deleting selected items must not deselect in the document
  qDeleteAll(m_overlayItems);
  m_syncingSelection = false;
  m_overlayItems.clear();
  const QList<Overlay>& overlays = m_doc->overlays();
  for (int i = 0; i < overlays.size(); ++i) {
    auto* item = new OverlayItem(overlays.at(i), i);
    item->setVisible(m_overlaysVisible);
    scene()->addItem(item);
    m_overlayItems << item;
  }
  syncSelectionFromDocument();
}

void Canvas::syncSelectionFromDocument() {
  m_syncingSelection = true;
  for (OverlayItem* item : m_overlayItems) item->setSelected(item->index() == m_doc->selectedOverlay());
  m_syncingSelection = false;
}

void Canvas::syncSelectionToDocument() {
  if (m_syncingSelection) return;
  const QList<QGraphicsItem*> selected = scene()->selectedItems();
  auto* item = selected.isEmpty() ? nullptr : dynamic_cast<OverlayItem*>(selected.first());
  m_doc->setSelectedOverlay(item ? item->index() : -1);
}

void Canvas::updateCursor() {
  if (m_panning)
    viewport()->setCursor(Qt::ClosedHandCursor);
  else if (m_spaceHeld)
    viewport()->setCursor(Qt::OpenHandCursor);
  else if (paintsMask())
    viewport()->setCursor(Qt::CrossCursor);
  else
    viewport()->setCursor(Qt::ArrowCursor);
}

void Canvas::updateBrushOutline(const QPointF& viewPos) {
  const bool show = paintsMask() && !m_spaceHeld && !m_doc->isEmpty();
  m_brushOutline->setVisible(show);
  if (show) {
    m_brushOutline->setRect(QRectF(-m_brushDiameter / 2, -m_brushDiameter / 2, m_brushDiameter, m_brushDiameter));
    m_brushOutline->setPos(toImage(viewPos));
  }
}

void Canvas::mousePressEvent(QMouseEvent* event) {
  const bool panButton = event->button() == Qt::MiddleButton || (event->button() == Qt::LeftButton && m_spaceHeld);
  if (panButton) {
    m_panning = true;
    m_panLast = event->position();
    updateCursor();
    return;
  }
  if (event->button() == Qt::LeftButton && paintsMask() && !m_doc->isEmpty()) {
    m_doc->beginMaskStroke();
    m_doc->strokeMaskTo(toImage(event->position()), currentBrush());
    return;
  }
  if (event->button() == Qt::LeftButton) QGraphicsView::mousePressEvent(event);
}

void Canvas::mouseMoveEvent(QMouseEvent* event) {
  const QPointF pos = event->position();
  const QPointF image = toImage(pos);
  const QPoint pixel(int(std::floor(image.x())), int(std::floor(image.y())));
  emit cursorMoved(m_doc->isEmpty() || !m_doc->mask().rect().contains(pixel) ? QPoint(-1, -1) : pixel);
  updateBrushOutline(pos);
  if (m_panning) {
    const QPointF delta = pos - m_panLast;
    m_panLast = pos;
    horizontalScrollBar()->setValue(horizontalScrollBar()->value() - qRound(delta.x()));
    verticalScrollBar()->setValue(verticalScrollBar()->value() - qRound(delta.y()));
    return;
  }
  if (m_doc->inStroke()) {
    m_doc->strokeMaskTo(image, currentBrush());
    return;
  }
  QGraphicsView::mouseMoveEvent(event);
}

void Canvas::mouseReleaseEvent(QMouseEvent* event) {
  if (m_panning && (event->button() == Qt::MiddleButton || event->button() == Qt::LeftButton)) {
    m_panning = false;
    updateCursor();
    return;
  }
  if (event->button() == Qt::LeftButton && m_doc->inStroke()) {
    m_doc->endMaskStroke(m_tool == Tool::Eraser ? tr("Eraser stroke") : tr("Brush stroke"));
    return;
  }
  QGraphicsView::mouseReleaseEvent(event);
}

void Canvas::wheelEvent(QWheelEvent* event) {
  if (m_doc->isEmpty() || event->angleDelta().y() == 0) return;
  m_autoFit = false;
  zoomAround(zoom() * std::pow(1.0015, event->angleDelta().y()), event->position());
  updateBrushOutline(event->position());
  event->accept();
}

void Canvas::keyPressEvent(QKeyEvent* event) {
  if (event->key() == Qt::Key_Space) {
    if (!event->isAutoRepeat()) {
      m_spaceHeld = true;
      m_brushOutline->setVisible(false);
      updateCursor();
    }
    event->accept();
    return;
  }
  QGraphicsView::keyPressEvent(event);
}

void Canvas::keyReleaseEvent(QKeyEvent* event) {
  if (event->key() == Qt::Key_Space) {
    if (!event->isAutoRepeat()) {
      m_spaceHeld = false;
      updateCursor();
    }
    event->accept();
    return;
  }
  QGraphicsView::keyReleaseEvent(event);
}

void Canvas::contextMenuEvent(QContextMenuEvent* event) {
  const int index = overlayAt(event->pos());
  if (index < 0) return;
  m_doc->setSelectedOverlay(index);
  QMenu menu(this);
  menu.addAction(tr("Use as Mask"), this, [this, index] { m_doc->useOverlayAsMask(index); });
  menu.addAction(tr("Clear Overlays"), m_doc, &Document::clearOverlays);
  menu.exec(event->globalPos());
}

void Canvas::resizeEvent(QResizeEvent* event) {
  QGraphicsView::resizeEvent(event);
  if (m_autoFit) fitToWindow();
}

void Canvas::leaveEvent(QEvent* event) {
  m_brushOutline->setVisible(false);
  emit cursorMoved(QPoint(-1, -1));
  QGraphicsView::leaveEvent(event);
}

}  // namespace loupe

namespace loupe {

void Canvas::drawForeground(QPainter* painter, const QRectF& rect) {
  QGraphicsView::drawForeground(painter, rect);
  if (!m_doc->isEmpty()) return;
  painter->save();
  painter->resetTransform();
  painter->setPen(QColor(190, 190, 196));
  painter->drawText(viewport()->rect(), Qt::AlignCenter,
                    tr("Open an image (Ctrl+O), drop one here, or paste one (Ctrl+V)"));
  painter->restore();
}

}  // namespace loupe
