// The qt-editor plugin loaded by the real host (QPluginLoader), talking to the real SDK.
#include <QDir>
#include <QDockWidget>
#include <QFile>
#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QStandardPaths>
#include <QProcess>
#include <QTemporaryDir>
#include <QTreeWidget>
#include <QtTest>

#include <QCheckBox>
#include <QComboBox>
#include <QSpinBox>
#include <QLineEdit>
#include <QPlainTextEdit>

#include "document.h"
#include "main_window.h"
#include "plugin_manager.h"

// The plugin's widgets are reached by object name: the plugin module has its own copy of its
// classes, so the test does not cast to them.
template <class T>
static T* child(QObject* root, const char* name) {
  auto* w = root->findChild<T*>(QString::fromLatin1(name));
  if (!w) qWarning("no child %s", name);
  return w;
}

using namespace loupe;

class QtEditorPluginTest : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("LoupeTest");
    QCoreApplication::setApplicationName("qt-editor-plugin-test");
    QVERIFY(m_models.isValid());
    // An installed variant (all files present), an incomplete one, the rest missing.
    QDir d(m_models.path());
    d.mkpath("Florence-2-base");
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"}) {
      QFile file(d.filePath(QStringLiteral("Florence-2-base/") + f));
      QVERIFY(file.open(QIODevice::WriteOnly));
      file.write("{}");
    }
    d.mkpath("Florence-2-large");
    QFile cfg(d.filePath("Florence-2-large/config.json"));
    QVERIFY(cfg.open(QIODevice::WriteOnly));
    cfg.write("{}");
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/florence2/tiny"), d.filePath("demo-florence2")));
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/sd/tiny-sd15-inpaint"), d.filePath("demo-sd15-inpainting")));
    qputenv("LOUPE_MODELS_DIR", m_models.path().toUtf8());
    // A Hugging Face cache holding a catalog model (the tiny Florence-2 weights under a catalog repo).
    QVERIFY(m_hf.isValid());
    const QDir snap(m_hf.filePath("hub/models--microsoft--Florence-2-large-ft/snapshots/r1"));
    QVERIFY(QDir().mkpath(snap.path()));
    for (const auto& f : QDir(QStringLiteral(LOUPE_FIXTURES_DIR "/florence2/tiny")).entryInfoList(QDir::Files))
      QVERIFY(QFile::copy(f.filePath(), snap.filePath(f.fileName())));
    qputenv("HF_HUB_CACHE", m_hf.filePath("hub").toUtf8());
    m_window = new MainWindow;
    m_window->resize(1400, 900);
    m_window->loadPlugins({QStringLiteral(LOUPE_PLUGIN_DIR)});
    QVERIFY(m_window->openImage(QStringLiteral(LOUPE_FIXTURES_DIR "/../../resources/images/sample.jpg")));
    m_window->show();
  }

  void pluginIsFoundAndLoaded() {
    bool loaded = false;
    for (const auto& r : m_window->plugins()->records()) loaded = loaded || (r.loaded && r.name == "Loupe");
    QVERIFY2(loaded, "the Loupe plugin was not loaded");
    for (const char* dock : {"LoupeTasksDock", "LoupeModelsDock", "LoupeTroubleshootingDock"})
      QVERIFY2(m_window->findChild<QDockWidget*>(dock), dock);
  }

  void troubleshootingShowsDiagnosticsAndRunsTheSelftest() {
    auto* panel = child<QWidget>(m_window, "LoupeTroubleshootingPanel");
    QVERIFY(panel);
    auto* summary = child<QLabel>(panel, "summary");
    QVERIFY(summary);
    QVERIFY2(summary->text().contains("libtorch"), qPrintable(summary->text()));
    QVERIFY(summary->text().contains("cpu"));
    // the CPU facts: threads, instruction sets, the BLAS libtorch calls
    QVERIFY2(summary->text().contains("threads") && summary->text().contains("BLAS: "), qPrintable(summary->text()));
    QVERIFY(panel->findChild<QListWidget*>()->count() > 0);  // problems (e.g. no CUDA device)
    auto* run = child<QPushButton>(panel, "runSelftest");
    auto* result = child<QLabel>(panel, "selftestResult");
    QTest::mouseClick(run, Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(result->text().contains("self-test passed"), 60000);
    QTRY_VERIFY(panel->findChild<QPlainTextEdit*>()->toPlainText().contains("runtime created"));
  }

  void selectorListsInstalledIncompleteAndMissingVariants() {
    auto* panel = child<QWidget>(m_window, "LoupeModelsPanel");
    QVERIFY(panel);
    QCOMPARE(child<QLineEdit>(panel, "modelsDir")->text(), m_models.path());
    auto* tree = panel->findChild<QTreeWidget*>();
    QMap<QString, QString> states;
    for (int i = 0; i < tree->topLevelItemCount(); ++i)
      states[tree->topLevelItem(i)->data(0, Qt::UserRole).toString()] = tree->topLevelItem(i)->text(1);
    QCOMPARE(states.value("florence2-base"), QString("installed"));
    QCOMPARE(states.value("florence2-large"), QString("incomplete"));
    QCOMPARE(states.value("sd15"), QString("missing"));
    QCOMPARE(states.value("sd21"), QString("missing"));
    QVERIFY(states.size() >= 7);
    // opening a broken folder reports the error in the panel, not a crash
    tree->setCurrentItem(tree->topLevelItem(2));  // Florence-2 large: incomplete
    QCOMPARE(tree->currentItem()->data(0, Qt::UserRole).toString(), QString("florence2-large"));
    QTest::mouseClick(child<QPushButton>(panel, "openModel"), Qt::LeftButton);
    auto* state = child<QLabel>(panel, "sessionState");
    QTRY_VERIFY_WITH_TIMEOUT(state->text().contains("Could not load"), 30000);
    QVERIFY2(state->text().contains("Florence-2-large"), qPrintable(state->text()));
  }

  void tasksExplainWhatIsMissing() {
    auto* tasks = child<QWidget>(m_window, "LoupeTasksPanel");
    QVERIFY(tasks);
    auto* task = child<QComboBox>(tasks, "task");
    auto* run = child<QPushButton>(tasks, "run");
    auto* status = child<QLabel>(tasks, "taskStatus");
    // No model open: the list holds no task (it is the session's), and Run says what to do.
    QCOMPARE(task->findData("caption"), -1);
    QVERIFY(!task->isEnabled());
    QTest::mouseClick(run, Qt::LeftButton);
    QVERIFY2(status->text().contains("Open a model first"), qPrintable(status->text()));
    // (A missing text, mask or region with a model open: test_qt_editor_tasks.cpp.)
  }

  void detectWithTheDemoModelThenUseAsMask() {
    auto* models = child<QWidget>(m_window, "LoupeModelsPanel");
    auto* tree = models->findChild<QTreeWidget*>();
    QTreeWidgetItem* demo = nullptr;
    for (int i = 0; i < tree->topLevelItemCount(); ++i)
      if (tree->topLevelItem(i)->text(0).contains("demo-florence2")) demo = tree->topLevelItem(i);
    QVERIFY2(demo, "the demo model is not listed");
    tree->setCurrentItem(demo);
    QTest::mouseClick(child<QPushButton>(models, "openModel"), Qt::LeftButton);
    auto* state = child<QLabel>(models, "sessionState");
    QTRY_VERIFY_WITH_TIMEOUT(state->text().startsWith("Loaded"), 30000);

    auto* tasks = child<QWidget>(m_window, "LoupeTasksPanel");
    // demo weights are labelled as such where the tasks are run, with a pointer to real models
    auto* notice = child<QLabel>(tasks, "demoNotice");
    QVERIFY(notice->isVisibleTo(tasks));
    QVERIFY2(notice->text().contains("Demo weights") && notice->text().contains("demo-florence2") &&
                 notice->text().contains("Models tab"),
             qPrintable(notice->text()));
    auto* task = child<QComboBox>(tasks, "task");
    auto* status = child<QLabel>(tasks, "taskStatus");
    task->setCurrentIndex(task->findData("region_proposal"));
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(status->text().startsWith("Done"), qPrintable(status->text()), 60000);
    // every region the model returned is an overlay on the canvas
    const int regions = status->text().section(' ', 1, 1).toInt();
    QCOMPARE(m_window->document()->overlays().size(), regions);
    // The demo weights are random but decoding is deterministic: on this image they give regions,
    // some of them degenerate (thinner than a pixel). "Use as mask" is checked on the first region
    // that covers pixels, so that the comparison below cannot pass on two empty masks.
    QVERIFY2(regions > 0, qPrintable(status->text()));
    auto* doc = m_window->document();
    const auto painted = [](const QImage& mask) {
      int n = 0;
      for (int y = 0; y < mask.height(); ++y)
        for (int x = 0; x < mask.width(); ++x) n += qGray(mask.pixel(x, y)) > 0;
      return n;
    };
    int index = -1;
    QImage expected;
    for (int i = 0; i < regions && index < 0; ++i) {
      expected = Document::overlayMask(doc->overlays().at(i), doc->mask().size());
      if (painted(expected) > 0) index = i;
    }
    QVERIFY2(index >= 0, qPrintable(QString("none of the %1 regions covers a pixel").arg(regions)));
    QCOMPARE(painted(doc->mask()), 0);
    QVERIFY(doc->useOverlayAsMask(index));
    QCOMPARE(doc->mask(), expected);  // "use as mask" paints exactly the region
  }

  void cancelAJob() {
    auto* tasks = child<QWidget>(m_window, "LoupeTasksPanel");
    auto* task = child<QComboBox>(tasks, "task");
    auto* status = child<QLabel>(tasks, "taskStatus");
    task->setCurrentIndex(task->findData("more_detailed_caption"));
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    // Cancelled while it generates (random demo weights run to the token limit): the job must end
    // as cancelled, not finish.
    QTRY_VERIFY2_WITH_TIMEOUT(status->text().startsWith("generate"), qPrintable(status->text()), 60000);
    QTest::mouseClick(child<QPushButton>(tasks, "cancel"), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(status->text(), QString("Cancelled."), 60000);
    QVERIFY(child<QPushButton>(tasks, "run")->isEnabled());
  }

  // "find it" -> "mask it" -> "inpaint it" with the demo diffusion model: the live preview shows,
  // the result is a new version whose pixels outside the mask are the original's; a longer run
  // is cancelled.
  void inpaintWithTheDemoDiffusionModelThenCancel() {
    auto* models = child<QWidget>(m_window, "LoupeModelsPanel");
    auto* tree = models->findChild<QTreeWidget*>();
    QTreeWidgetItem* demo = nullptr;
    for (int i = 0; i < tree->topLevelItemCount(); ++i)
      if (tree->topLevelItem(i)->text(0).contains("demo-sd15-inpainting")) demo = tree->topLevelItem(i);
    QVERIFY2(demo, "the demo diffusion model is not listed");
    tree->setCurrentItem(demo);
    QTest::mouseClick(child<QPushButton>(models, "openModel"), Qt::LeftButton);
    auto* state = child<QLabel>(models, "sessionState");
    QTRY_VERIFY_WITH_TIMEOUT(state->text().startsWith("Loaded") && state->text().contains("inpainting"), 30000);

    auto* doc = m_window->document();
    const QImage before = doc->image();
    QImage mask(before.size(), QImage::Format_Grayscale8);
    mask.fill(0);
    for (int y = 100; y < 180; ++y)
      for (int x = 200; x < 320; ++x) mask.setPixel(x, y, qRgb(255, 255, 255));
    QVERIFY(doc->setMask(mask, "test mask"));
    const int versions = doc->versions().size();

    auto* tasks = child<QWidget>(m_window, "LoupeTasksPanel");
    auto* task = child<QComboBox>(tasks, "task");
    auto* status = child<QLabel>(tasks, "taskStatus");
    task->setCurrentIndex(task->findData("inpaint"));
    child<QLineEdit>(tasks, "text")->setText("a cat");
    child<QSpinBox>(tasks, "steps")->setValue(4);
    // only the masked area: generated at the model's size (64 px for the demo weights), pasted back
    child<QCheckBox>(tasks, "only_masked")->setChecked(true);
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(status->text().startsWith("Done"), qPrintable(status->text()), 60000);
    QCOMPARE(doc->versions().size(), versions + 1);
    const QImage after = doc->image().convertToFormat(QImage::Format_RGB32);
    const QImage orig = before.convertToFormat(QImage::Format_RGB32);
    QCOMPARE(after.size(), orig.size());
    int changed = 0;
    for (int y = 0; y < orig.height(); ++y)
      for (int x = 0; x < orig.width(); ++x) {
        const bool in = x >= 200 && x < 320 && y >= 100 && y < 180;
        if (!in && after.pixel(x, y) != orig.pixel(x, y)) QFAIL(qPrintable(QString("pixel %1,%2 outside the mask changed").arg(x).arg(y)));
        changed += in && after.pixel(x, y) != orig.pixel(x, y);
      }
    QVERIFY(changed > 120 * 80 / 2);
    QVERIFY(child<QLabel>(tasks, "preview")->pixmap().isNull() == false);  // the last live preview

    child<QSpinBox>(tasks, "steps")->setValue(150);
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(status->text().contains("/150") || status->text().contains("denoising"), 30000);
    QTest::mouseClick(child<QPushButton>(tasks, "cancel"), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(status->text(), QString("Cancelled."), 60000);
    QCOMPARE(doc->versions().size(), versions + 1);  // nothing added by the cancelled job
    QVERIFY(child<QPushButton>(tasks, "run")->isEnabled());
  }

  // The VAE chooser lists the models folder's VAE/ (files and diffusers vae folders); the choice is
  // applied to the session when a job starts, and a file that is no VAE fails with the SDK's message.
  void vaeChooserAppliesToTheSession() {
    QDir d(m_models.path());
    QVERIFY(d.mkpath("VAE"));
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/sd/tiny-sd15/vae"), d.filePath("VAE/tiny-vae")));
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/sd/lora/tiny-sd15-lora.safetensors"),
                        d.filePath("VAE/not-a-vae.safetensors")));
    auto* tasks = child<QWidget>(m_window, "LoupeTasksPanel");
    auto* task = child<QComboBox>(tasks, "task");
    auto* status = child<QLabel>(tasks, "taskStatus");
    task->setCurrentIndex(task->findData("txt2img"));  // a generative task lists what is there now
    auto* vae = child<QComboBox>(tasks, "vae");
    QCOMPARE(vae->count(), 3);  // the model's own, and the two entries (by name)
    QCOMPARE(vae->itemText(1), QString("not-a-vae.safetensors"));
    QCOMPARE(vae->itemText(2), QString("tiny-vae"));
    task->setCurrentIndex(task->findData("inpaint"));
    child<QLineEdit>(tasks, "text")->setText("");  // an empty prompt is valid: unconditional
    child<QSpinBox>(tasks, "steps")->setValue(2);
    vae->setCurrentIndex(2);
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(status->text().startsWith("Done"), qPrintable(status->text()), 60000);
    vae->setCurrentIndex(1);
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(status->text().startsWith("Failed") && status->text().contains("not a VAE"),
                              qPrintable(status->text()), 60000);
    vae->setCurrentIndex(0);
    QTest::mouseClick(child<QPushButton>(tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(status->text().startsWith("Done"), qPrintable(status->text()), 60000);
  }

  void modelsOnThisComputerAndDownloads() {
    auto* panel = child<QWidget>(m_window, "LoupeModelsPanel");
    auto* found = child<QTreeWidget>(panel, "foundModels");
    QVERIFY(found);
    // The scan runs off the UI thread: the list fills when it ends.
    auto listed = [found] {
      for (int i = 0; i < found->topLevelItemCount(); ++i)
        if (found->topLevelItem(i)->text(0) == "microsoft/Florence-2-large-ft  (catalog: florence2-large-ft)") return true;
      return false;
    };
    QTRY_VERIFY2_WITH_TIMEOUT(listed(), "the model in the Hugging Face cache is not listed", 30000);
    auto* tree = panel->findChild<QTreeWidget*>();  // the catalog's variants (the first tree)
    auto item = [tree](const QString& id) -> QTreeWidgetItem* {
      for (int i = 0; i < tree->topLevelItemCount(); ++i)
        if (tree->topLevelItem(i)->data(0, Qt::UserRole).toString() == id) return tree->topLevelItem(i);
      return nullptr;
    };
    QCOMPARE(item("florence2-large-ft")->text(1), QString("installed"));  // found in the cache
    QCOMPARE(item("florence2-base-ft")->text(1), QString("missing"));

    // Download a missing variant from a local Hugging Face-style hub (tests/abi/hub_server.py).
    QTemporaryDir hub;
    const QDir repo(hub.filePath("root/microsoft/Florence-2-base-ft"));
    QVERIFY(QDir().mkpath(repo.path()));
    for (const auto& f : QDir(QStringLiteral(LOUPE_FIXTURES_DIR "/florence2/tiny")).entryInfoList(QDir::Files))
      QVERIFY(QFile::copy(f.filePath(), repo.filePath(f.fileName())));
    QProcess server;
    server.start("python3", {QStringLiteral(LOUPE_HUB_SERVER), "--root", hub.filePath("root"), "--port-file",
                             hub.filePath("port"), "--log", hub.filePath("log")});
    QVERIFY(server.waitForStarted());
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(hub.filePath("port")), 30000);
    QFile port(hub.filePath("port"));
    QVERIFY(port.open(QIODevice::ReadOnly));
    qputenv("HF_ENDPOINT", "http://127.0.0.1:" + port.readAll());
    auto* download = child<QPushButton>(panel, "downloadModel");
    tree->setCurrentItem(item("florence2-large-ft"));
    QVERIFY(!download->isEnabled());  // installed: nothing to download
    tree->setCurrentItem(item("florence2-base-ft"));
    QVERIFY(download->isEnabled());
    QTest::mouseClick(download, Qt::LeftButton);
    auto* state = child<QLabel>(panel, "downloadState");
    QTRY_VERIFY_WITH_TIMEOUT(state->text().contains("Downloaded into"), 60000);
    QVERIFY(QFile::exists(QDir(m_models.path()).filePath("Florence-2-base-ft/model.safetensors")));
    QVERIFY(!QFile::exists(QDir(m_models.path()).filePath("Florence-2-base-ft/model.safetensors.part")));
    QCOMPARE(item("florence2-base-ft")->text(1), QString("installed"));
    qunsetenv("HF_ENDPOINT");
    server.kill();
    server.waitForFinished();
  }

  void cleanupTestCase() {
    m_window->close();
    delete m_window;
  }

 private:
  QTemporaryDir m_models;
  QTemporaryDir m_hf;
  MainWindow* m_window = nullptr;
};

QTEST_MAIN(QtEditorPluginTest)
#include "test_qt_editor_plugin.moc"
