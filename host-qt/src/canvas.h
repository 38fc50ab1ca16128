// The canvas: a QGraphicsView of the Document (image, tinted mask, overlays). Brush and eraser
// strokes edit the mask through the Document; the view itself holds only view state.
#pragma once

#include <QGraphicsView>

#include "brush.h"

class QGraphicsPixmapItem;
class QGraphicsEllipseItem;

namespace loupe {

class Document;
class MaskItem;
class OverlayItem;

enum class Tool { Select, Brush, Eraser };

class Canvas : public QGraphicsView {
  Q_OBJECT

 public:
  explicit Canvas(Document* document, QWidget* parent = nullptr);
  ~Canvas() override;

  Tool tool() const { return m_tool; }
  void setTool(Tool tool);
  // Brush and eraser share one size and hardness.
  double brushDiameter() const { return m_brushDiameter; }
  void setBrushDiameter(double diameter);
  double brushHardness() const { return m_brushHardness; }
  void setBrushHardness(double hardness);

  double zoom() const { return transform().m11(); }
  // Zooms keeping the image point under `viewPos` (viewport coordinates) in place.
  void zoomAround(double zoom, const QPointF& viewPos);
  void zoomBy(double factor);
  void fitToWindow();
  void zoomActualSize();

  bool overlaysVisible() const { return m_overlaysVisible; }
  void setOverlaysVisible(bool visible);
  // Index of the topmost overlay under `viewPos`, or -1.
  int overlayAt(const QPoint& viewPos) const;
  // Image coordinates of a viewport position.
  QPointF toImage(const QPointF& viewPos) const;

 signals:
  void toolChanged(loupe::Tool tool);
  void brushDiameterChanged(double diameter);
  void zoomChanged(double zoom);
  void cursorMoved(const QPoint& imagePixel);  // (-1, -1) when outside the image

 protected:
  void mousePressEvent(QMouseEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void keyReleaseEvent(QKeyEvent* event) override;
  void contextMenuEvent(QContextMenuEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  void leaveEvent(QEvent* event) override;
  void drawForeground(QPainter* painter, const QRectF& rect) override;

 private:
  void rebuild();
  void updateImage();
  void rebuildOverlays();
  void syncSelectionFromDocument();
  void syncSelectionToDocument();
  void updateCursor();
  void updateBrushOutline(const QPointF& viewPos);
  Brush currentBrush() const;
  bool paintsMask() const { return m_tool == Tool::Brush || m_tool == Tool::Eraser; }

  Document* m_doc;
  QGraphicsPixmapItem* m_imageItem;
  MaskItem* m_maskItem;
  QGraphicsEllipseItem* m_brushOutline;
  QList<OverlayItem*> m_overlayItems;

  Tool m_tool = Tool::Brush;
  double m_brushDiameter = 40;
  double m_brushHardness = 0.8;
  bool m_overlaysVisible = true;
  bool m_autoFit = true;  // refit on resize until the user zooms
  bool m_spaceHeld = false;
  bool m_panning = false;
  bool m_syncingSelection = false;
  QPointF m_panLast;
};

}  // namespace loupe
