// Document: undo/redo of mask strokes and image versions, mask operations, overlay masks.
#include <QSignalSpy>
#include <QtTest>

#include "document.h"

using loupe::Brush;
using loupe::Document;
using loupe::Overlay;

namespace {

QImage solid(const QSize& size, const QColor& color) {
  QImage image(size, QImage::Format_ARGB32);
  image.fill(color);
  return image;
}

int maskAt(const Document& doc, int x, int y) { return doc.mask().valid(x, y) ? doc.mask().constScanLine(y)[x] : -1; }

int countSelected(const QImage& mask) {
  int n = 0;
  for (int y = 0; y < mask.height(); ++y)
    for (int x = 0; x < mask.width(); ++x) n += mask.constScanLine(y)[x] == 255;
  return n;
}

void stroke(Document& doc, const QList<QPointF>& points, const Brush& brush) {
  doc.beginMaskStroke();
  for (const QPointF& p : points) doc.strokeMaskTo(p, brush);
  doc.endMaskStroke(QStringLiteral("stroke"));
}

}  // namespace

class TestDocument : public QObject {
  Q_OBJECT

 private slots:
  void resetGivesEmptyMask() {
    Document doc;
    QVERIFY(doc.isEmpty());
    doc.reset(solid({64, 48}, Qt::blue), QStringLiteral("/tmp/x.png"));
    QCOMPARE(doc.image().format(), QImage::Format_ARGB32);
    QCOMPARE(doc.mask().format(), QImage::Format_Grayscale8);
    QCOMPARE(doc.mask().size(), QSize(64, 48));
    QCOMPARE(countSelected(doc.mask()), 0);
    QCOMPARE(doc.versions().size(), 1);
    QCOMPARE(doc.undoStack()->count(), 0);
  }

  void strokeIsOneUndoStep() {
    Document doc;
    doc.reset(solid({100, 100}, Qt::gray));
    QSignalSpy changed(&doc, &Document::maskChanged);
    stroke(doc, {{20.5, 50.5}, {40.5, 50.5}, {60.5, 50.5}, {80.5, 50.5}}, Brush{10, 1.0, false});
    QCOMPARE(doc.undoStack()->count(), 1);
    QVERIFY(changed.count() >= 2);
    QCOMPARE(maskAt(doc, 50, 50), 255);
    QCOMPARE(maskAt(doc, 20, 50), 255);
    QCOMPARE(maskAt(doc, 50, 46), 255);
    QCOMPARE(maskAt(doc, 50, 40), 0);
    QCOMPARE(maskAt(doc, 10, 50), 0);
    QCOMPARE(maskAt(doc, 90, 50), 0);

    doc.undoStack()->undo();
    QCOMPARE(countSelected(doc.mask()), 0);
    QCOMPARE(maskAt(doc, 50, 50), 0);
    doc.undoStack()->redo();
    QCOMPARE(maskAt(doc, 50, 50), 255);
    QCOMPARE(maskAt(doc, 50, 40), 0);
  }

  void eraserStroke() {
    Document doc;
    doc.reset(solid({100, 100}, Qt::gray));
    doc.fillMask();
    stroke(doc, {{10.5, 30.5}, {90.5, 30.5}}, Brush{8, 1.0, true});
    QCOMPARE(maskAt(doc, 50, 30), 0);
    QCOMPARE(maskAt(doc, 50, 40), 255);
    doc.undoStack()->undo();
    QCOMPARE(maskAt(doc, 50, 30), 255);
  }

  void softBrushFadesOut() {
    Document doc;
    doc.reset(solid({100, 100}, Qt::gray));
    stroke(doc, {{50, 50}}, Brush{40, 0.0, false});
    QVERIFY(maskAt(doc, 50, 50) >= 250);  // pixel centre 0.7 px from the dab centre
    const int mid = maskAt(doc, 60, 50);
    QVERIFY2(mid > 20 && mid < 240, qPrintable(QString::number(mid)));
    QVERIFY(maskAt(doc, 65, 50) < mid);
    QCOMPARE(maskAt(doc, 71, 50), 0);
  }

  void emptyStrokeAddsNoStep() {
    Document doc;
    doc.reset(solid({50, 50}, Qt::gray));
    doc.fillMask();
    stroke(doc, {{25, 25}}, Brush{10, 1.0, false});  // already all selected
    QCOMPARE(doc.undoStack()->count(), 1);
  }

  void fillClearInvert() {
    Document doc;
    doc.reset(solid({40, 30}, Qt::gray));
    doc.fillMask();
    QCOMPARE(countSelected(doc.mask()), 40 * 30);
    doc.clearMask();
    QCOMPARE(countSelected(doc.mask()), 0);
    stroke(doc, {{10, 10}}, Brush{4, 1.0, false});
    const int painted = countSelected(doc.mask());
    QVERIFY(painted > 0);
    doc.invertMask();
    QCOMPARE(countSelected(doc.mask()), 40 * 30 - painted);
    QCOMPARE(maskAt(doc, 10, 10), 0);
    QCOMPARE(maskAt(doc, 30, 20), 255);
    QCOMPARE(doc.undoStack()->count(), 4);
    doc.undoStack()->undo();  // invert
    doc.undoStack()->undo();  // stroke
    QCOMPARE(countSelected(doc.mask()), 0);
    doc.undoStack()->undo();  // clear
    QCOMPARE(countSelected(doc.mask()), 40 * 30);
  }

  void setMaskRejectsWrongSize() {
    Document doc;
    doc.reset(solid({40, 30}, Qt::gray));
    QVERIFY(!doc.setMask(QImage(10, 10, QImage::Format_Grayscale8), QStringLiteral("bad")));
    QCOMPARE(doc.undoStack()->count(), 0);
  }

  void versionsUndoRedo() {
    Document doc;
    doc.reset(solid({32, 32}, Qt::red));
    QSignalSpy imageChanged(&doc, &Document::imageChanged);
    doc.addVersion(solid({32, 32}, Qt::green), QStringLiteral("Inpaint"));
    QCOMPARE(doc.versions().size(), 2);
    QCOMPARE(doc.currentVersion(), 1);
    QCOMPARE(doc.image().pixelColor(5, 5), QColor(Qt::green));
    QCOMPARE(imageChanged.count(), 1);

    doc.switchVersion(0);
    QCOMPARE(doc.currentVersion(), 0);
    QCOMPARE(doc.image().pixelColor(5, 5), QColor(Qt::red));

    doc.undoStack()->undo();  // switch
    QCOMPARE(doc.currentVersion(), 1);
    doc.undoStack()->undo();  // add
    QCOMPARE(doc.versions().size(), 1);
    QCOMPARE(doc.currentVersion(), 0);
    QCOMPARE(doc.image().pixelColor(5, 5), QColor(Qt::red));
    doc.undoStack()->redo();
    QCOMPARE(doc.versions().size(), 2);
    QCOMPARE(doc.image().pixelColor(5, 5), QColor(Qt::green));
  }

  void versionOfAnotherSizeScalesMask() {
    Document doc;
    doc.reset(solid({50, 50}, Qt::red));
    doc.addOverlays({Overlay::box(QRectF(0, 0, 10, 10))});
    doc.fillMask();
    doc.addVersion(solid({100, 80}, Qt::green), QStringLiteral("Upscale"));
    QCOMPARE(doc.mask().size(), QSize(100, 80));
    QCOMPARE(countSelected(doc.mask()), 100 * 80);
    QVERIFY(doc.overlays().isEmpty());
    doc.undoStack()->undo();
    QCOMPARE(doc.mask().size(), QSize(50, 50));
    QCOMPARE(countSelected(doc.mask()), 50 * 50);
  }

  void boxUseAsMaskFillsExactlyTheBox() {
    Document doc;
    doc.reset(solid({100, 100}, Qt::gray));
    doc.fillMask();  // "use as mask" replaces what was there
    doc.addOverlays({Overlay::box(QRectF(10, 20, 30, 40), QStringLiteral("dog"), 0.8)});
    QVERIFY(doc.useOverlayAsMask(0));
    QCOMPARE(countSelected(doc.mask()), 30 * 40);
    QCOMPARE(maskAt(doc, 10, 20), 255);
    QCOMPARE(maskAt(doc, 39, 59), 255);
    QCOMPARE(maskAt(doc, 9, 20), 0);
    QCOMPARE(maskAt(doc, 40, 20), 0);
    QCOMPARE(maskAt(doc, 10, 19), 0);
    QCOMPARE(maskAt(doc, 10, 60), 0);
    doc.undoStack()->undo();
    QCOMPARE(countSelected(doc.mask()), 100 * 100);
  }

  void polygonUseAsMask() {
    Document doc;
    doc.reset(solid({100, 100}, Qt::gray));
    const QPolygonF triangle({{10, 10}, {90, 10}, {10, 90}});
    doc.addOverlays({Overlay::polygon(triangle, QStringLiteral("cat")),
                     Overlay::quad(QPolygonF({{50, 0}, {100, 50}, {50, 100}, {0, 50}}))});
    QVERIFY(doc.useOverlayAsMask(0));
    QCOMPARE(maskAt(doc, 12, 12), 255);
    QCOMPARE(maskAt(doc, 30, 30), 255);
    QCOMPARE(maskAt(doc, 60, 60), 0);
    QCOMPARE(maskAt(doc, 5, 5), 0);
    const int area = countSelected(doc.mask());
    QVERIFY2(std::abs(area - 3200) < 120, qPrintable(QString::number(area)));  // 80*80/2

    QVERIFY(doc.useOverlayAsMask(1));  // a diamond
    QCOMPARE(maskAt(doc, 50, 50), 255);
    QCOMPARE(maskAt(doc, 5, 5), 0);
    QCOMPARE(maskAt(doc, 95, 95), 0);
    QVERIFY(!doc.useOverlayAsMask(2));
  }

  void overlaySelection() {
    Document doc;
    doc.reset(solid({20, 20}, Qt::gray));
    QSignalSpy spy(&doc, &Document::overlaySelectionChanged);
    doc.addOverlays({Overlay::box(QRectF(0, 0, 5, 5)), Overlay::box(QRectF(5, 5, 5, 5))});
    doc.setSelectedOverlay(1);
    QCOMPARE(doc.selectedOverlay(), 1);
    doc.clearOverlays();
    QCOMPARE(doc.selectedOverlay(), -1);
    QCOMPARE(spy.count(), 2);
  }
};

QTEST_MAIN(TestDocument)
#include "test_document.moc"
