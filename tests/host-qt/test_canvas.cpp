// Canvas: brush and eraser strokes driven by real mouse events, zoom, overlay picking.
#include <QSignalSpy>
#include <QtTest>

#include "canvas.h"
#include "document.h"

using loupe::Canvas;
using loupe::Document;
using loupe::Overlay;
using loupe::Tool;

namespace {

QImage solid(const QSize& size) {
  QImage image(size, QImage::Format_ARGB32);
  image.fill(Qt::darkGray);
  return image;
}

int maskAt(const Document& doc, int x, int y) { return doc.mask().constScanLine(y)[x]; }

}  // namespace

class TestCanvas : public QObject {
  Q_OBJECT

  Document* doc = nullptr;
  Canvas* canvas = nullptr;

  // Viewport position of the centre of image pixel (x, y).
  QPoint at(int x, int y) const { return canvas->viewportTransform().map(QPointF(x + 0.5, y + 0.5)).toPoint(); }

  void drag(const QList<QPoint>& pixels) {
    QWidget* viewport = canvas->viewport();
    QTest::mousePress(viewport, Qt::LeftButton, Qt::NoModifier, at(pixels.first().x(), pixels.first().y()));
    for (const QPoint& p : pixels.mid(1)) QTest::mouseMove(viewport, at(p.x(), p.y()));
    QTest::mouseRelease(viewport, Qt::LeftButton, Qt::NoModifier, at(pixels.last().x(), pixels.last().y()));
  }

 private slots:
  void init() {
    doc = new Document;
    canvas = new Canvas(doc);
    canvas->resize(400, 400);
    canvas->show();
    QVERIFY(QTest::qWaitForWindowExposed(canvas));
    doc->reset(solid({100, 100}));
    canvas->zoomActualSize();
    canvas->setBrushDiameter(10);
    canvas->setBrushHardness(1.0);
  }
  void cleanup() {
    delete canvas;
    delete doc;
  }

  void brushStrokePaintsAndUndoRemoves() {
    canvas->setTool(Tool::Brush);
    drag({{20, 50}, {35, 50}, {50, 50}, {65, 50}, {80, 50}});
    QCOMPARE(doc->undoStack()->count(), 1);
    QCOMPARE(maskAt(*doc, 20, 50), 255);
    QCOMPARE(maskAt(*doc, 50, 50), 255);
    QCOMPARE(maskAt(*doc, 80, 50), 255);
    QCOMPARE(maskAt(*doc, 50, 53), 255);
    QCOMPARE(maskAt(*doc, 50, 42), 0);
    QCOMPARE(maskAt(*doc, 50, 58), 0);
    QCOMPARE(maskAt(*doc, 10, 50), 0);
    QCOMPARE(maskAt(*doc, 90, 50), 0);
    QCOMPARE(maskAt(*doc, 5, 5), 0);
    doc->undoStack()->undo();
    QCOMPARE(maskAt(*doc, 50, 50), 0);
    QCOMPARE(maskAt(*doc, 20, 50), 0);
  }

  void eraserStroke() {
    doc->fillMask();
    canvas->setTool(Tool::Eraser);
    drag({{50, 10}, {50, 50}, {50, 90}});
    QCOMPARE(maskAt(*doc, 50, 10), 0);
    QCOMPARE(maskAt(*doc, 50, 70), 0);
    QCOMPARE(maskAt(*doc, 40, 50), 255);
    QCOMPARE(maskAt(*doc, 60, 50), 255);
    QCOMPARE(doc->undoStack()->count(), 2);
    doc->undoStack()->undo();
    QCOMPARE(maskAt(*doc, 50, 50), 255);
  }

  void selectToolDoesNotPaint() {
    canvas->setTool(Tool::Select);
    drag({{20, 20}, {60, 60}});
    QCOMPARE(maskAt(*doc, 40, 40), 0);
    QCOMPARE(doc->undoStack()->count(), 0);
  }

  void middleButtonPansWithoutPainting() {
    canvas->zoomAround(8, QPointF(200, 200));
    const QPointF before = canvas->toImage(QPointF(200, 200));
    QTest::mousePress(canvas->viewport(), Qt::MiddleButton, Qt::NoModifier, QPoint(200, 200));
    QTest::mouseMove(canvas->viewport(), QPoint(240, 200));
    QTest::mouseRelease(canvas->viewport(), Qt::MiddleButton, Qt::NoModifier, QPoint(240, 200));
    const QPointF after = canvas->toImage(QPointF(200, 200));
    QVERIFY2(qAbs((before.x() - after.x()) - 5.0) < 0.3, qPrintable(QString::number(before.x() - after.x())));
    QCOMPARE(doc->undoStack()->count(), 0);
  }

  void fitAndActualSize() {
    doc->reset(solid({200, 100}));
    canvas->resize(400, 300);
    canvas->fitToWindow();
    const QRect shown = canvas->mapFromScene(QRectF(0, 0, 200, 100)).boundingRect();
    QVERIFY(canvas->viewport()->rect().adjusted(-1, -1, 1, 1).contains(shown));
    QVERIFY2(shown.width() >= canvas->viewport()->width() - 6, qPrintable(QString::number(shown.width())));
    QVERIFY(canvas->zoom() > 1.8 && canvas->zoom() <= 2.0);
    canvas->zoomActualSize();
    QCOMPARE(canvas->zoom(), 1.0);
  }

  void wheelZoomsAroundCursor() {
    canvas->zoomAround(8, QPointF(200, 200));
    const QPointF cursor(120, 260);
    const QPointF under = canvas->toImage(cursor);
    QWheelEvent wheel(cursor, canvas->viewport()->mapToGlobal(cursor), QPoint(), QPoint(0, 120), Qt::NoButton,
                      Qt::NoModifier, Qt::NoScrollPhase, false);
    QApplication::sendEvent(canvas->viewport(), &wheel);
    QVERIFY(canvas->zoom() > 8.5);
    const QPointF still = canvas->toImage(cursor);
    QVERIFY2(QLineF(under, still).length() < 0.2, qPrintable(QStringLiteral("%1,%2").arg(still.x()).arg(still.y())));
  }

  void overlayPickingAndSelection() {
    doc->addOverlays({Overlay::box(QRectF(10, 10, 80, 80), QStringLiteral("big")),
                      Overlay::box(QRectF(40, 40, 10, 10), QStringLiteral("small"), 0.5)});
    QCOMPARE(canvas->overlayAt(at(20, 20)), 0);
    QCOMPARE(canvas->overlayAt(at(45, 45)), 1);  // the smaller one is on top
    QCOMPARE(canvas->overlayAt(at(95, 95)), -1);
    canvas->setTool(Tool::Select);
    QTest::mouseClick(canvas->viewport(), Qt::LeftButton, Qt::NoModifier, at(45, 45));
    QCOMPARE(doc->selectedOverlay(), 1);
    doc->setSelectedOverlay(0);
    QCOMPARE(canvas->scene()->selectedItems().size(), 1);
    canvas->setOverlaysVisible(false);
    QCOMPARE(canvas->overlayAt(at(20, 20)), -1);
  }
};

QTEST_MAIN(TestCanvas)
#include "test_canvas.moc"
