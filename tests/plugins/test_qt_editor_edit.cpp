// The qt-editor plugin's "Edit by words" panel in the real host on the real SDK: Find shows the
// found mask on the document (equal to what the C ABI's edit with paint = 0 returns for the same
// request), the brush adjusts it, Paint repaints under the adjusted mask as one image version (one
// undo step restores the image), and pixels outside the mask keep their values.
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QUndoStack>
#include <QtTest>

#include "brush.h"
#include "document.h"
#include "loupe/loupe.h"
#include "main_window.h"

using namespace loupe;

template <class T>
static T* child(QObject* root, const QString& name) {
  auto* w = root->findChild<T*>(name);
  if (!w) qWarning("no child %s", qPrintable(name));
  return w;
}

class QtEditorEditTest : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("LoupeTest");
    QCoreApplication::setApplicationName("qt-editor-edit-test");
    QSettings().clear();
    qunsetenv("LOUPE_OPEN_MODEL");
    m_window = new MainWindow;
    m_window->loadPlugins({QStringLiteral(LOUPE_PLUGIN_DIR)});
    QVERIFY(m_window->openImage(QStringLiteral(LOUPE_FIXTURES_DIR "/images/tiny.ppm")));
    m_window->show();
    m_panel = child<QWidget>(m_window, "LoupeEditPanel");
    QVERIFY(m_panel);
    m_status = child<QLabel>(m_panel, "editStatus");
    QVERIFY(m_status);
    child<QLineEdit>(m_panel, "editTarget")->setText("the red car");
    child<QLineEdit>(m_panel, "editPrompt")->setText("a blue bicycle");
    child<QLineEdit>(m_panel, "editFinder")->setText(LOUPE_FIXTURES_DIR "/florence2/tiny");
    child<QLineEdit>(m_panel, "editPainter")->setText(LOUPE_FIXTURES_DIR "/sd/tiny-sd15-inpaint");
    child<QSpinBox>(m_panel, "editSteps")->setValue(2);
    child<QSpinBox>(m_panel, "editSeed")->setValue(5);
    child<QSpinBox>(m_panel, "editGrow")->setValue(2);
  }

  void cleanupTestCase() { delete m_window; }

  void findShowsTheMaskTheSdkFinds() {
    auto* doc = m_window->document();
    m_original = doc->image();
    QTest::mouseClick(child<QPushButton>(m_panel, "editFind"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(m_status->text().startsWith("Found") || m_status->text().startsWith("Failed"),
                              qPrintable(m_status->text()), 120000);
    QVERIFY2(m_status->text().startsWith("Found"), qPrintable(m_status->text()));
    QVERIFY(!doc->overlays().isEmpty());
    QCOMPARE(doc->versions().size(), 1);  // nothing painted yet

    // The reference: the same request through the C ABI (paint = 0, the finder's defaults).
    loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
    ro.device = "cpu";
    loupe_runtime* rt = nullptr;
    QVERIFY2(loupe_runtime_create(&rt, &ro) == LOUPE_OK, loupe_last_error());
    loupe_session* finder = nullptr;
    QVERIFY2(loupe_session_open(&finder, rt, LOUPE_FIXTURES_DIR "/florence2/tiny", nullptr) == LOUPE_OK, loupe_last_error());
    loupe_request* rq = nullptr;
    QVERIFY(loupe_request_create(&rq, "edit") == LOUPE_OK);
    const QImage rgba = m_original.convertToFormat(QImage::Format_RGBA8888);
    const loupe_image v{rgba.width(), rgba.height(), int32_t(rgba.bytesPerLine()), LOUPE_RGBA8, rgba.constBits()};
    QVERIFY(loupe_request_set_image(rq, &v) == LOUPE_OK);
    loupe_request_set_string(rq, "target", "the red car");
    loupe_request_set_int(rq, "grow", 2);
    loupe_request_set_int(rq, "paint", 0);
    loupe_job* job = nullptr;
    QVERIFY2(loupe_edit_submit(&job, rt, finder, nullptr, rq, nullptr, nullptr) == LOUPE_OK, loupe_last_error());
    loupe_request_free(rq);
    loupe_job_wait(job, -1);
    loupe_result* res = nullptr;
    QVERIFY2(loupe_job_take_result(&res, job) == LOUPE_OK, loupe_last_error());
    loupe_image m;
    QVERIFY(loupe_result_image(res, loupe_result_image_count(res) - 1, &m) == LOUPE_OK);
    const QImage want = QImage(m.data, m.width, m.height, m.stride, QImage::Format_Grayscale8).copy();
    loupe_result_free(res);
    loupe_job_free(job);
    loupe_session_close(finder);
    loupe_runtime_free(rt);
    QCOMPARE(doc->mask(), want);
  }

  // The brush adjusts the found mask (the brush tool's own document calls); Paint repaints under it.
  void theAdjustedMaskIsPaintedAsOneStep() {
    auto* doc = m_window->document();
    Brush brush;
    brush.diameter = 6;
    brush.hardness = 1;
    doc->beginMaskStroke();
    doc->strokeMaskTo(QPointF(4, 4), brush);
    doc->strokeMaskTo(QPointF(10, 4), brush);
    doc->endMaskStroke("brush");
    const QImage mask = doc->mask();
    QVERIFY(qGray(mask.pixel(7, 4)) == 255);
    const int undoBefore = doc->undoStack()->count();
    QTest::mouseClick(child<QPushButton>(m_panel, "editPaint"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(m_status->text().startsWith("Done") || m_status->text().startsWith("Failed"),
                              qPrintable(m_status->text()), 120000);
    QVERIFY2(m_status->text().startsWith("Done"), qPrintable(m_status->text()));
    QCOMPARE(doc->versions().size(), 2);
    QCOMPARE(doc->undoStack()->count(), undoBefore + 1);  // one undoable step
    const QImage edited = doc->image().convertToFormat(QImage::Format_RGB32);
    const QImage original = m_original.convertToFormat(QImage::Format_RGB32);
    int outsideChanged = 0, insideChanged = 0;
    for (int y = 0; y < edited.height(); ++y)
      for (int x = 0; x < edited.width(); ++x) {
        const bool changed = edited.pixel(x, y) != original.pixel(x, y);
        (qGray(mask.pixel(x, y)) >= 128 ? insideChanged : outsideChanged) += changed;
      }
    QCOMPARE(outsideChanged, 0);
    QVERIFY(insideChanged > 0);
    doc->undoStack()->undo();
    QCOMPARE(doc->image().convertToFormat(QImage::Format_RGB32), original);
  }

  void anEmptyTargetIsRefused() {
    // a target the panel cannot send: empty
    child<QLineEdit>(m_panel, "editTarget")->setText(" ");
    QTest::mouseClick(child<QPushButton>(m_panel, "editFind"), Qt::LeftButton);
    QVERIFY2(m_status->text().contains("What"), qPrintable(m_status->text()));
    child<QLineEdit>(m_panel, "editTarget")->setText("the red car");
  }

 private:
  MainWindow* m_window = nullptr;
  QWidget* m_panel = nullptr;
  QLabel* m_status = nullptr;
  QImage m_original;
};

QTEST_MAIN(QtEditorEditTest)
#include "test_qt_editor_edit.moc"
