// The qt-editor plugin's Tasks panel is built from the SDK's task description: the tasks the open
// session offers (loupe_task_describe) and one widget per parameter (loupe_task_param), with the
// session's defaults. The plugin runs in the real host on the real SDK; the expectations come from
// the C ABI (a second runtime opened by the test on the same fixtures), never from a list written
// here, so a task or parameter added to the SDK's table is checked as soon as it exists.
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDirIterator>
#include <QDoubleSpinBox>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QToolButton>
#include <QTreeWidget>
#include <QtTest>
#include <cmath>
#include <limits>

#include "document.h"
#include "loupe/loupe.h"
#include "main_window.h"

using namespace loupe;

// The plugin's widgets are reached by object name: the plugin module has its own copy of its
// classes, so the test does not cast to them.
template <class T>
static T* child(QObject* root, const QString& name) {
  auto* w = root->findChild<T*>(name);
  if (!w) qWarning("no child %s", qPrintable(name));
  return w;
}

static QString str(const char* s) { return QString::fromUtf8(s ? s : ""); }

static int clampInt(double v) {
  return int(qBound(double(std::numeric_limits<int>::min()), v, double(std::numeric_limits<int>::max())));
}

class QtEditorTasksTest : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("LoupeTest");
    QCoreApplication::setApplicationName("qt-editor-tasks-test");
    QSettings().clear();  // no model reopened from an earlier run
    qunsetenv("LOUPE_OPEN_MODEL");
    QVERIFY(m_models.isValid());
    const QDir d(m_models.path());
    // "demo-" folders are listed by the Models panel as they are.
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/florence2/tiny"), d.filePath("demo-florence2")));
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/sd/tiny-sd15"), d.filePath("demo-sd15")));
    QVERIFY(QFile::link(QStringLiteral(LOUPE_FIXTURES_DIR "/sdxl/tiny-sdxl"), d.filePath("demo-sdxl")));
    qputenv("LOUPE_MODELS_DIR", m_models.path().toUtf8());
    qputenv("HF_HUB_CACHE", m_models.filePath("no-hf-cache").toUtf8());

    // The reference: the same fixtures opened through the C ABI.
    loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
    ro.device = "cpu";
    QVERIFY2(loupe_runtime_create(&m_rt, &ro) == LOUPE_OK, loupe_last_error());
    QVERIFY2(loupe_session_open(&m_florence, m_rt, LOUPE_FIXTURES_DIR "/florence2/tiny", nullptr) == LOUPE_OK,
             loupe_last_error());

    // A small image keeps the diffusion runs short (img2img and inpaint work at the image's size).
    QImage im(96, 64, QImage::Format_RGB32);
    for (int y = 0; y < im.height(); ++y)
      for (int x = 0; x < im.width(); ++x) im.setPixel(x, y, qRgb(x * 2, y * 3, (x + y) % 256));
    QVERIFY(im.save(m_models.filePath("small.png")));

    m_window = new MainWindow;
    m_window->resize(1400, 900);
    m_window->loadPlugins({QStringLiteral(LOUPE_PLUGIN_DIR)});
    QVERIFY(m_window->openImage(QStringLiteral(LOUPE_FIXTURES_DIR "/../../resources/images/sample.jpg")));
    m_window->show();
    m_tasks = child<QWidget>(m_window, "LoupeTasksPanel");
    QVERIFY(m_tasks);
    m_task = child<QComboBox>(m_tasks, "task");
    m_status = child<QLabel>(m_tasks, "taskStatus");
    QVERIFY(m_task && m_status);
  }

  // The editor's plug-in names no task of the SDK's table: the list and the forms come from the
  // description (runtime tasks, selftest and download, are run by the panels that need them).
  void theEditorNamesNoTask() {
    QStringList sources;
    QDirIterator it(QStringLiteral(LOUPE_PLUGIN_SRC_DIR), {"*.cpp", "*.h"});
    while (it.hasNext()) sources << it.next();
    QVERIFY(sources.size() >= 4);
    QString all;
    for (const QString& f : sources) {
      QFile file(f);
      QVERIFY(file.open(QIODevice::ReadOnly));
      all += QString::fromUtf8(file.readAll());
    }
    int checked = 0;
    for (size_t i = 0; i < loupe_task_count(nullptr); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(nullptr, i, &t) == LOUPE_OK);
      if (t.runtime) continue;
      const QString quoted = QStringLiteral("\"%1\"").arg(str(t.name));
      QVERIFY2(!all.contains(quoted), qPrintable(quoted + " is named in plugins/qt-editor/src"));
      ++checked;
    }
    QVERIFY(checked >= 18);
  }

  void noModelNoTasks() {
    QCOMPARE(taskItems(), QStringList());
    QVERIFY(!m_task->isEnabled());
    QVERIFY(!child<QWidget>(m_tasks, "params")->findChild<QWidget*>("paramForm"));
    QTest::mouseClick(child<QPushButton>(m_tasks, "run"), Qt::LeftButton);
    QVERIFY2(m_status->text().contains("Open a model first"), qPrintable(m_status->text()));
  }

  // The list is the session's: every task it offers (region_category too, which no editor code
  // names), under its group's heading, its help as the tooltip; nothing else.
  void florenceListsTheTasksTheSessionOffers() {
    openModel("demo-florence2");
    QStringList groups;
    QMap<QString, QStringList> byGroup;  // the description's order within each group
    for (size_t i = 0; i < loupe_task_count(m_florence); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(m_florence, i, &t) == LOUPE_OK);
      if (!groups.contains(str(t.group))) groups << str(t.group);
      byGroup[str(t.group)] << str(t.name);
      const int row = m_task->findData(str(t.name));
      QVERIFY2(row >= 0, t.name);
      QCOMPARE(m_task->itemText(row).trimmed(), str(t.label));
      QCOMPARE(m_task->itemData(row, Qt::ToolTipRole).toString(), str(t.help));
      int heading = row - 1;  // the nearest heading above (headings carry no task name)
      while (heading >= 0 && m_task->itemData(heading).isValid()) --heading;
      QVERIFY2(heading >= 0, t.name);
      QCOMPARE(m_task->itemText(heading).toLower(), str(t.group).toLower());
    }
    QStringList expected;  // grouped, the groups in the order the description first names them
    for (const QString& g : groups) expected << byGroup[g];
    QCOMPARE(taskItems(), expected);
    QVERIFY(expected.contains("region_category"));
    QVERIFY(expected.size() >= 14);  // Florence-2: its 14 tasks
    // No diffusion settings for a session that makes no images.
    QVERIFY(!child<QComboBox>(m_tasks, "vae")->isVisibleTo(m_tasks));
  }

  void florenceFormsFollowTheDescription() { checkForms(m_florence); }

  void florenceExplainsWhatIsMissing() {
    auto* doc = m_window->document();
    auto* run = child<QPushButton>(m_tasks, "run");
    for (size_t i = 0; i < loupe_task_count(m_florence); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(m_florence, i, &t) == LOUPE_OK);
      m_task->setCurrentIndex(m_task->findData(str(t.name)));
      if (t.required & (LOUPE_INPUT_TEXT | LOUPE_INPUT_QUESTION)) {
        child<QLineEdit>(m_tasks, "text")->setText("  ");
        QTest::mouseClick(run, Qt::LeftButton);
        QVERIFY2(m_status->text().startsWith("Write the " + str(t.text_label)), qPrintable(m_status->text()));
      }
      if (t.required & LOUPE_INPUT_REGION) {
        child<QLineEdit>(m_tasks, "text")->setText("");
        doc->clearOverlays();
        QTest::mouseClick(run, Qt::LeftButton);
        QVERIFY2(m_status->text().contains("Select a box"), qPrintable(m_status->text()));
      }
    }
  }

  // region_category, which the old hard-coded list missed, runs from the editor on the selected box
  // and answers what the SDK answers for the same request.
  void regionCategoryRunsOnTheSelectedBox() {
    auto* doc = m_window->document();
    const QRectF box(120, 80, 200, 150);
    selectBox(box);
    m_task->setCurrentIndex(m_task->findData("region_category"));
    QVERIFY(!child<QLineEdit>(m_tasks, "text")->isVisibleTo(m_tasks));  // it takes no text
    child<QSpinBox>(m_tasks, "max_new_tokens")->setValue(8);
    QTest::mouseClick(child<QPushButton>(m_tasks, "run"), Qt::LeftButton);
    QTRY_VERIFY2_WITH_TIMEOUT(m_status->text().startsWith("Done") || m_status->text().startsWith("Failed"),
                              qPrintable(m_status->text()), 120000);
    QVERIFY2(m_status->text().startsWith("Done"), qPrintable(m_status->text()));

    loupe_request* rq = nullptr;
    QVERIFY(loupe_request_create(&rq, "region_category") == LOUPE_OK);
    const QImage rgba = doc->image().convertToFormat(QImage::Format_RGBA8888);
    const loupe_image v{rgba.width(), rgba.height(), int32_t(rgba.bytesPerLine()), LOUPE_RGBA8, rgba.constBits()};
    QVERIFY(loupe_request_set_image(rq, &v) == LOUPE_OK);
    QVERIFY(loupe_request_set_region(rq, float(box.left()), float(box.top()), float(box.right()), float(box.bottom())) ==
            LOUPE_OK);
    QVERIFY(loupe_request_set_int(rq, "max_new_tokens", 8) == LOUPE_OK);
    loupe_job* job = nullptr;
    QVERIFY2(loupe_session_submit(&job, m_florence, rq, nullptr, nullptr) == LOUPE_OK, loupe_last_error());
    loupe_request_free(rq);
    QVERIFY(loupe_job_wait(job, -1) == LOUPE_OK);
    loupe_result* res = nullptr;
    QVERIFY2(loupe_job_take_result(&res, job) == LOUPE_OK, loupe_last_error());
    QCOMPARE(child<QPlainTextEdit>(m_tasks, "output")->toPlainText(), str(loupe_result_text(res)).trimmed());
    loupe_result_free(res);
    loupe_job_free(job);
  }

  // Every task the session offers runs from its default form: only the inputs it requires are
  // given (a text, a selected box) and the generation is kept short through its widget.
  void everyFlorenceTaskRunsFromItsDefaultForm() { runEveryTask(m_florence); }

  // Stable Diffusion: txt2img's form (and the other tasks') has a widget for every parameter the
  // description lists, with the session's defaults (e.g. the model's own image size).
  void sdFormsFollowTheDescription() {
    QVERIFY2(loupe_session_open(&m_sd, m_rt, LOUPE_FIXTURES_DIR "/sd/tiny-sd15", nullptr) == LOUPE_OK, loupe_last_error());
    openModel("demo-sd15");
    QStringList expected;
    for (size_t i = 0; i < loupe_task_count(m_sd); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(m_sd, i, &t) == LOUPE_OK);
      expected << str(t.name);
    }
    QStringList listed = taskItems();
    listed.sort();
    expected.sort();
    QCOMPARE(listed, expected);
    QVERIFY(expected.contains("txt2img"));
    m_task->setCurrentIndex(m_task->findData("txt2img"));
    // The session's default size is its model's (64 px for the tiny fixture), not the table's 512.
    size_t index = 0;
    QVERIFY(loupe_task_find(m_sd, "txt2img", &index) == LOUPE_OK);
    size_t widthIndex = 0;
    for (bool found = false; !found; ++widthIndex) {
      loupe_param_info p = LOUPE_PARAM_INFO_INIT;
      QVERIFY(loupe_task_param(m_sd, index, widthIndex, &p) == LOUPE_OK);
      found = str(p.name) == "width";
      if (found) {
        QCOMPARE(child<QSpinBox>(m_tasks, "width")->value(), int(p.default_number));
        QVERIFY(p.default_number < 512);
      }
    }
    // A session that makes images: the VAE and LoRA choosers (session settings, not parameters).
    QVERIFY(child<QComboBox>(m_tasks, "vae")->isVisibleTo(m_tasks));
    QVERIFY(child<QComboBox>(m_tasks, "lora")->isVisibleTo(m_tasks));
    // An empty prompt is a valid prompt: the text row is there, nothing requires it.
    QVERIFY(child<QLineEdit>(m_tasks, "text")->isVisibleTo(m_tasks));
    checkForms(m_sd);
  }

  // Advanced parameters are folded away under "Advanced" until it is opened.
  void advancedParametersAreFolded() {
    QVERIFY2(m_sd, "the Stable Diffusion fixture is not open");
    m_task->setCurrentIndex(m_task->findData("txt2img"));
    auto* toggle = child<QToolButton>(m_tasks, "advancedToggle");
    auto* advanced = child<QWidget>(m_tasks, "advanced");
    QVERIFY(toggle && advanced);
    QVERIFY(toggle->isVisibleTo(m_tasks));
    QVERIFY(!advanced->isVisibleTo(m_tasks));
    toggle->click();
    QVERIFY(child<QWidget>(m_tasks, "advanced")->isVisibleTo(m_tasks));
    toggle->click();
    QVERIFY(!child<QWidget>(m_tasks, "advanced")->isVisibleTo(m_tasks));
  }

  // What the user changes is kept per task while the panel lives; other tasks keep their defaults.
  void changedValuesAreKeptPerTask() {
    QVERIFY2(m_sd, "the Stable Diffusion fixture is not open");
    m_task->setCurrentIndex(m_task->findData("txt2img"));
    auto* steps = child<QSpinBox>(m_tasks, "steps");
    QVERIFY(steps);
    const int def = steps->value();
    steps->setValue(def + 3);
    child<QLineEdit>(m_tasks, "negative_prompt")->setText("blurry");
    m_task->setCurrentIndex(m_task->findData("img2img"));
    QCOMPARE(child<QSpinBox>(m_tasks, "steps")->value(), def);
    QCOMPARE(child<QLineEdit>(m_tasks, "negative_prompt")->text(), QString());
    m_task->setCurrentIndex(m_task->findData("txt2img"));
    QCOMPARE(child<QSpinBox>(m_tasks, "steps")->value(), def + 3);
    QCOMPARE(child<QLineEdit>(m_tasks, "negative_prompt")->text(), QString("blurry"));
    child<QSpinBox>(m_tasks, "steps")->setValue(def);
    child<QLineEdit>(m_tasks, "negative_prompt")->setText("");
  }

  void sdExplainsAMissingMask() {
    QVERIFY2(m_sd, "the Stable Diffusion fixture is not open");
    QVERIFY(m_window->openImage(m_models.filePath("small.png")));
    auto* doc = m_window->document();
    QImage none(doc->image().size(), QImage::Format_Grayscale8);
    none.fill(0);
    QVERIFY(doc->setMask(none, "no mask"));
    for (size_t i = 0; i < loupe_task_count(m_sd); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(m_sd, i, &t) == LOUPE_OK);
      if (!(t.required & LOUPE_INPUT_MASK)) continue;
      m_task->setCurrentIndex(m_task->findData(str(t.name)));
      QTest::mouseClick(child<QPushButton>(m_tasks, "run"), Qt::LeftButton);
      QVERIFY2(m_status->text().contains("mask"), qPrintable(m_status->text()));
    }
  }

  void everySdTaskRunsFromItsDefaultForm() {
    QVERIFY2(m_sd, "the Stable Diffusion fixture is not open");
    runEveryTask(m_sd);
  }

  // SDXL: txt2img's size has the sizes the session suggests (the description's choices of "width",
  // "WIDTHxHEIGHT") as presets that set width and height; no SDXL code in the editor.
  void sdxlOffersItsSizesAsPresets() {
    openModel("demo-sdxl");
    m_task->setCurrentIndex(m_task->findData("txt2img"));
    auto* presets = child<QComboBox>(m_tasks, "widthPresets");
    QVERIFY(presets);
    QVERIFY(presets->findText("1152x896") > 0);
    QVERIFY(presets->findText("640x1536") > 0);
    emit presets->activated(presets->findText("1152x896"));
    QCOMPARE(child<QSpinBox>(m_tasks, "width")->value(), 1152);
    QCOMPARE(child<QSpinBox>(m_tasks, "height")->value(), 896);
    QCOMPARE(presets->currentIndex(), 0);
    // Stable Diffusion 1.x suggests none
    openModel("demo-sd15");
    m_task->setCurrentIndex(m_task->findData("txt2img"));
    QVERIFY(!m_tasks->findChild<QComboBox*>("widthPresets"));
  }

  void cleanupTestCase() {
    if (m_window) m_window->close();
    delete m_window;
    loupe_session_close(m_florence);
    loupe_session_close(m_sd);
    loupe_runtime_free(m_rt);
  }

 private:
  // The task names in the list, in order (headings carry no task).
  QStringList taskItems() const {
    QStringList out;
    for (int i = 0; i < m_task->count(); ++i)
      if (!m_task->itemData(i).toString().isEmpty()) out << m_task->itemData(i).toString();
    return out;
  }

  void openModel(const QString& folder) {
    auto* models = child<QWidget>(m_window, "LoupeModelsPanel");
    auto* tree = models->findChild<QTreeWidget*>();
    QTreeWidgetItem* item = nullptr;
    for (int i = 0; i < tree->topLevelItemCount(); ++i)
      if (tree->topLevelItem(i)->text(0).startsWith(folder + " ")) item = tree->topLevelItem(i);
    QVERIFY2(item, qPrintable(folder + " is not listed"));
    tree->setCurrentItem(item);
    QTest::mouseClick(child<QPushButton>(models, "openModel"), Qt::LeftButton);
    auto* state = child<QLabel>(models, "sessionState");
    QTRY_VERIFY2_WITH_TIMEOUT(state->text().startsWith("Loaded"), qPrintable(state->text()), 60000);
    QVERIFY(m_task->isEnabled());
  }

  void selectBox(const QRectF& box) {
    auto* doc = m_window->document();
    doc->clearOverlays();
    doc->addOverlays({Overlay::box(box, "test box")});
    doc->setSelectedOverlay(0);
  }

  // Every task's form against the session's description: one widget per parameter, no other, of
  // the parameter's type, with its default, range, step, unit, choices, label and help; advanced
  // ones inside the "Advanced" group.
  void checkForms(loupe_session* session) {
    for (size_t i = 0; i < loupe_task_count(session); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(session, i, &t) == LOUPE_OK);
      m_task->setCurrentIndex(m_task->findData(str(t.name)));
      QCOMPARE(m_task->currentData().toString(), str(t.name));
      auto* params = child<QWidget>(m_tasks, "params");
      QStringList shown;
      for (QWidget* w : params->findChildren<QWidget*>())
        if (w->property("loupeParam").isValid()) shown << w->property("loupeParam").toString();
      QStringList described;
      for (size_t k = 0; k < t.param_count; ++k) {
        loupe_param_info p = LOUPE_PARAM_INFO_INIT;
        QVERIFY(loupe_task_param(session, i, k, &p) == LOUPE_OK);
        const QString name = str(p.name);
        described << name;
        const QString where = str(t.name) + "." + name;
        QWidget* w = params->findChild<QWidget*>(name);
        QVERIFY2(w, qPrintable(where + ": no widget"));
        QCOMPARE(w->toolTip(), str(p.help));
        bool inAdvanced = false;
        for (QWidget* a = w->parentWidget(); a && a != params; a = a->parentWidget())
          inAdvanced = inAdvanced || a->objectName() == "advanced";
        QVERIFY2(inAdvanced == (p.advanced != 0), qPrintable(where));
        const QString suffix = str(p.unit).isEmpty() ? QString() : " " + str(p.unit);
        switch (p.type) {
          case LOUPE_PARAM_INT: {
            auto* s = qobject_cast<QSpinBox*>(w);
            QVERIFY2(s, qPrintable(where + ": not a spin box"));
            QCOMPARE(s->value(), clampInt(p.default_number));
            QCOMPARE(s->minimum(), clampInt(p.min));
            QCOMPARE(s->maximum(), clampInt(p.max));
            QCOMPARE(s->singleStep(), qMax(1, clampInt(p.step)));
            QCOMPARE(s->suffix(), suffix);
            break;
          }
          case LOUPE_PARAM_FLOAT: {
            auto* s = qobject_cast<QDoubleSpinBox*>(w);
            QVERIFY2(s, qPrintable(where + ": not a double spin box"));
            QVERIFY2(std::abs(s->value() - p.default_number) < 1e-9, qPrintable(where));
            QVERIFY2(std::abs(s->minimum() - p.min) < 1e-9 && std::abs(s->maximum() - p.max) < 1e-9, qPrintable(where));
            if (p.step > 0) QVERIFY2(std::abs(s->singleStep() - p.step) < 1e-9, qPrintable(where));
            QCOMPARE(s->suffix(), suffix);
            break;
          }
          case LOUPE_PARAM_BOOL: {
            auto* c = qobject_cast<QCheckBox*>(w);
            QVERIFY2(c, qPrintable(where + ": not a check box"));
            QCOMPARE(c->isChecked(), p.default_number != 0);
            QCOMPARE(c->text(), str(p.label));
            break;
          }
          case LOUPE_PARAM_STRING: {
            auto* e = qobject_cast<QLineEdit*>(w);
            QVERIFY2(e, qPrintable(where + ": not a line edit"));
            QCOMPARE(e->text(), str(p.default_string));
            break;
          }
          case LOUPE_PARAM_CHOICE: {
            auto* c = qobject_cast<QComboBox*>(w);
            QVERIFY2(c, qPrintable(where + ": not a combo box"));
            QStringList choices;
            for (size_t n = 0; n < p.choice_count; ++n) choices << str(p.choices[n]);
            QStringList items;
            for (int n = 0; n < c->count(); ++n) items << c->itemText(n);
            QCOMPARE(items, choices);
            QCOMPARE(c->currentText(), str(p.default_string));
            break;
          }
          default: QFAIL(qPrintable(where + ": unknown type"));
        }
        if (p.type != LOUPE_PARAM_BOOL) {  // the row's label (a check box carries its own)
          QLabel* label = nullptr;
          for (QLabel* l : w->parentWidget()->findChildren<QLabel*>())
            if (l->buddy() == w) label = l;
          QVERIFY2(label, qPrintable(where + ": no label"));
          QCOMPARE(label->text(), str(p.label));
        }
      }
      shown.sort();
      described.sort();
      QCOMPARE(shown, described);
      // the text input, when the task takes one
      QCOMPARE(child<QLineEdit>(m_tasks, "text")->isVisibleTo(m_tasks), !str(t.text_key).isEmpty());
    }
  }

  // Runs every task the session offers from the panel, each with its default form: the inputs it
  // requires are provided (a text, a selected box, a mask), and only the widgets of parameters
  // that make tests slow are set (a few tokens, two denoising steps).
  void runEveryTask(loupe_session* session) {
    auto* doc = m_window->document();
    int ran = 0;
    for (size_t i = 0; i < loupe_task_count(session); ++i) {
      loupe_task_info t = LOUPE_TASK_INFO_INIT;
      QVERIFY(loupe_task_describe(session, i, &t) == LOUPE_OK);
      const QString name = str(t.name);
      m_task->setCurrentIndex(m_task->findData(name));
      QCOMPARE(m_task->currentData().toString(), name);
      if (!str(t.text_key).isEmpty()) child<QLineEdit>(m_tasks, "text")->setText("a cat");
      if (t.inputs & LOUPE_INPUT_REGION) selectBox(QRectF(10, 10, doc->image().width() / 2, doc->image().height() / 2));
      if (t.inputs & LOUPE_INPUT_MASK) {
        QImage mask(doc->image().size(), QImage::Format_Grayscale8);
        mask.fill(0);
        for (int y = mask.height() / 4; y < mask.height() / 2; ++y)
          for (int x = mask.width() / 4; x < mask.width() / 2; ++x) mask.setPixel(x, y, 255);
        QVERIFY(doc->setMask(mask, "test mask"));
      }
      auto* params = child<QWidget>(m_tasks, "params");
      if (auto* s = params->findChild<QSpinBox*>("max_new_tokens")) s->setValue(8);
      if (auto* s = params->findChild<QSpinBox*>("steps")) s->setValue(2);
      const int versions = doc->versions().size();
      QTest::mouseClick(child<QPushButton>(m_tasks, "run"), Qt::LeftButton);
      QTRY_VERIFY2_WITH_TIMEOUT(m_status->text().startsWith("Done") || m_status->text().startsWith("Failed") ||
                                    m_status->text() == "Cancelled.",
                                qPrintable(name + ": " + m_status->text()), 180000);
      QVERIFY2(m_status->text().startsWith("Done"), qPrintable(name + ": " + m_status->text()));
      if (t.outputs & LOUPE_OUTPUT_IMAGES) QVERIFY2(doc->versions().size() > versions, qPrintable(name));
      ++ran;
    }
    QVERIFY(ran > 0);
  }

  QTemporaryDir m_models;
  MainWindow* m_window = nullptr;
  QWidget* m_tasks = nullptr;
  QComboBox* m_task = nullptr;
  QLabel* m_status = nullptr;
  loupe_runtime* m_rt = nullptr;
  loupe_session* m_florence = nullptr;
  loupe_session* m_sd = nullptr;
};

QTEST_MAIN(QtEditorTasksTest)
#include "test_qt_editor_tasks.moc"
