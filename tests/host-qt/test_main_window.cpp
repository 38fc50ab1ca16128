// MainWindow: plugin loading (good, failing, foreign, garbage, missing), drop/paste, save/load.
#include <QDockWidget>
#include <QMenuBar>
#include <QMimeData>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QToolButton>
#include <QtTest>

#include "canvas.h"
#include "document.h"
#include "main_window.h"
#include "plugin_manager.h"

using loupe::MainWindow;
using loupe::PluginRecord;

namespace {

QImage pattern() {
  QImage image(64, 48, QImage::Format_ARGB32);
  for (int y = 0; y < image.height(); ++y)
    for (int x = 0; x < image.width(); ++x) image.setPixel(x, y, qRgba(x * 4, y * 5, (x + y) % 256, 255));
  return image;
}

const PluginRecord* recordFor(const loupe::PluginManager& plugins, const QString& fileName) {
  for (const PluginRecord& record : plugins.records())
    if (QFileInfo(record.path).fileName() == fileName) return &record;
  return nullptr;
}

}  // namespace

class TestMainWindow : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);  // keep QSettings away from the user's
    QCoreApplication::setOrganizationName(QStringLiteral("Loupe"));
    QCoreApplication::setApplicationName(QStringLiteral("Loupe Editor Tests"));
    qputenv("LOUPE_PLUGIN_PATH", "");
  }

  void opensWithoutPlugins() {
    MainWindow window;
    window.loadPlugins({});
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QVERIFY(window.document()->isEmpty());
  }

  void garbageAndMissingPluginsAreReported() {
    QTemporaryDir dir;
    QFile garbage(dir.filePath(QStringLiteral("libgarbage.so")));
    QVERIFY(garbage.open(QIODevice::WriteOnly));
    garbage.write("this is not an ELF file at all");
    garbage.close();

    MainWindow window;
    window.loadPlugins({dir.path()});
    const PluginRecord* record = recordFor(*window.plugins(), QStringLiteral("libgarbage.so"));
    QVERIFY(record);
    QVERIFY(!record->loaded);
    QVERIFY(!record->error.isEmpty());
    QVERIFY(window.statusBar()->currentMessage().contains(QStringLiteral("failed")));
    auto* problems = window.findChild<QToolButton*>(QStringLiteral("PluginProblems"));
    QVERIFY(problems && !problems->isHidden());  // stays after later status messages

    QVERIFY(!window.plugins()->loadFile(dir.filePath(QStringLiteral("libmissing.so"))));
    QCOMPARE(window.plugins()->records().last().error, QStringLiteral("File not found."));
    QCOMPARE(window.plugins()->failureCount(), 2);
  }

  void testPluginWorksEndToEnd() {
    MainWindow window;
    window.loadPlugins({QStringLiteral(LOUPE_TEST_PLUGIN_DIR)});
    const loupe::PluginManager& plugins = *window.plugins();

    const PluginRecord* good = recordFor(plugins, QStringLiteral("loupe_test_plugin.so"));
    QVERIFY(good);
    QVERIFY2(good->loaded, qPrintable(good->error));
    QCOMPARE(good->name, QStringLiteral("Test plugin"));

    const PluginRecord* failing = recordFor(plugins, QStringLiteral("loupe_test_plugin_failing.so"));
    QVERIFY(failing);
    QVERIFY(!failing->loaded);
    QCOMPARE(failing->error, QStringLiteral("test plugin refuses to start"));

    const PluginRecord* foreign = recordFor(plugins, QStringLiteral("loupe_test_plugin_wrong_iid.so"));
    QVERIFY(foreign);
    QVERIFY(!foreign->loaded);
    QVERIFY2(foreign->error.contains(QStringLiteral("org.example.NotLoupe/1.0")), qPrintable(foreign->error));

    // The dock and the menu action it added.
    auto* dock = window.findChild<QDockWidget*>(QStringLiteral("TestPluginDock"));
    QVERIFY(dock);
    QCOMPARE(window.dockWidgetArea(dock), Qt::RightDockWidgetArea);
    auto* detect = window.findChild<QAction*>(QStringLiteral("TestPluginDetect"));
    QVERIFY(detect);

    // Its documentChanged connection adds an overlay; its action adds another.
    QImage image(80, 40, QImage::Format_ARGB32);
    image.fill(Qt::white);
    QMimeData data;
    data.setImageData(image);
    QVERIFY(window.openFromMimeData(&data));
    QCOMPARE(window.document()->overlays().size(), 1);
    const loupe::Overlay overlay = window.document()->overlays().first();
    QCOMPARE(overlay.label, QStringLiteral("test"));
    QCOMPARE(overlay.points.boundingRect(), QRectF(20, 10, 40, 20));
    detect->trigger();
    QCOMPARE(window.document()->overlays().size(), 2);

    // ... and detect -> use as mask is one step.
    window.document()->setSelectedOverlay(0);
    QVERIFY(window.document()->useOverlayAsMask(window.document()->selectedOverlay()));
    QCOMPARE(window.document()->mask().pixelColor(20, 10).value(), 255);
    QCOMPARE(window.document()->mask().pixelColor(19, 10).value(), 0);
  }

  void keyboardShortcuts() {
    MainWindow window;
    window.show();
    window.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&window));
    QMimeData data;
    data.setImageData(pattern());
    QVERIFY(window.openFromMimeData(&data));
    loupe::Canvas* canvas = window.canvas();
    canvas->setFocus();

    QTest::keyClick(&window, Qt::Key_E);
    QCOMPARE(canvas->tool(), loupe::Tool::Eraser);
    QTest::keyClick(&window, Qt::Key_B);
    QCOMPARE(canvas->tool(), loupe::Tool::Brush);
    const double size = canvas->brushDiameter();
    QTest::keyClick(&window, Qt::Key_BracketRight);
    QVERIFY(canvas->brushDiameter() > size);
    QTest::keyClick(&window, Qt::Key_BracketLeft);
    QTest::keyClick(&window, Qt::Key_BracketLeft);
    QVERIFY(canvas->brushDiameter() < size);

    window.document()->fillMask();
    QTest::keyClick(&window, Qt::Key_Z, Qt::ControlModifier);
    QCOMPARE(window.document()->mask().pixelColor(0, 0).value(), 0);
    QTest::keyClick(&window, Qt::Key_Z, Qt::ControlModifier | Qt::ShiftModifier);
    QCOMPARE(window.document()->mask().pixelColor(0, 0).value(), 255);

    canvas->zoomActualSize();
    QTest::keyClick(&window, Qt::Key_0, Qt::ControlModifier);
    QVERIFY(canvas->zoom() != 1.0);  // fitted
  }

  void dropAndPasteOpenImages() {
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("dropped.png"));
    QVERIFY(pattern().save(path));

    MainWindow window;
    QMimeData dropped;
    dropped.setUrls({QUrl::fromLocalFile(path)});
    QVERIFY(window.openFromMimeData(&dropped));
    QCOMPARE(window.document()->path(), QFileInfo(path).absoluteFilePath());
    QCOMPARE(window.document()->image().size(), QSize(64, 48));
    QVERIFY(window.windowTitle().contains(QStringLiteral("dropped.png")));

    QMimeData pasted;
    pasted.setImageData(QImage(10, 20, QImage::Format_RGB32));
    QVERIFY(window.openFromMimeData(&pasted));
    QCOMPARE(window.document()->image().size(), QSize(10, 20));
    QVERIFY(window.document()->path().isEmpty());

    QMimeData text;
    text.setText(QStringLiteral("not an image"));
    QVERIFY(!window.openFromMimeData(&text));
    QVERIFY(!window.openImage(dir.filePath(QStringLiteral("missing.png"))));
  }

  void saveAndLoadRoundTrip() {
    QTemporaryDir dir;
    const QString source = dir.filePath(QStringLiteral("source.png"));
    QVERIFY(pattern().save(source));

    MainWindow window;
    QVERIFY(window.openImage(source));
    window.document()->addOverlays({loupe::Overlay::box(QRectF(8, 8, 16, 8))});
    QVERIFY(window.document()->useOverlayAsMask(0));
    QVERIFY(window.isWindowModified());

    const QString imagePath = dir.filePath(QStringLiteral("copy.png"));
    const QString maskPath = dir.filePath(QStringLiteral("copy-mask.png"));
    QVERIFY(window.saveImage(imagePath));
    QVERIFY(!window.isWindowModified());
    QVERIFY(window.saveMask(maskPath));

    MainWindow reopened;
    QVERIFY(reopened.openImage(imagePath));
    QCOMPARE(reopened.document()->image(), pattern());
    const QImage mask = QImage(maskPath).convertToFormat(QImage::Format_Grayscale8);
    QCOMPARE(mask, window.document()->mask());
    QCOMPARE(mask.pixelColor(8, 8).value(), 255);
    QCOMPARE(mask.pixelColor(7, 8).value(), 0);
  }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
