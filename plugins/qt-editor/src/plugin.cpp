#include "plugin.h"

#include <QAction>
#include <QCoreApplication>
#include <QDir>
#include <QDockWidget>
#include <QFileInfo>
#include <QMainWindow>
#include <QPushButton>
#include <QSettings>
#include <QTimer>

#include "edit_panel.h"
#include "loupe_client.h"
#include "models_panel.h"
#include "tasks_panel.h"
#include "troubleshooting_panel.h"

namespace loupe::qt {

namespace {
// The models folder: settings, else $LOUPE_MODELS_DIR, else ~/.local/share/loupe/models.
QString defaultModelsDir() {
  const QString env = qEnvironmentVariable("LOUPE_MODELS_DIR");
  if (!env.isEmpty()) return env;
  return QDir::home().filePath(".local/share/loupe/models");
}
// The catalog: the one built into libloupe, unless $LOUPE_CATALOG names another file.
QString catalogPath() { return qEnvironmentVariable("LOUPE_CATALOG"); }
QDockWidget* dock(const QString& title, const QString& object, QWidget* content) {
  auto* d = new QDockWidget(title);
  d->setObjectName(object);
  d->setWidget(content);
  return d;
}
}  // namespace

bool LoupePlugin::initialize(loupe::HostContext* host, QString* error) {
  m_host = host;
  m_client = new LoupeClient(this);
  QSettings s;
  s.beginGroup("loupe");
  // The environment wins over settings so that scripted runs (demo, tests) are reproducible.
  const QString modelsDir = qEnvironmentVariableIsSet("LOUPE_MODELS_DIR") ? defaultModelsDir()
                                                                          : s.value("modelsDir", defaultModelsDir()).toString();
  QString err;
  if (!m_client->start(s.value("device", "auto").toString(), s.value("precision", "auto").toString(), modelsDir, &err)) {
    // A bad saved device (e.g. cuda:1 gone) must not lock the person out: fall back to auto.
    if (!m_client->start("auto", "auto", modelsDir, &err)) {
      if (error) *error = err;
      return false;
    }
  }
  m_models = new ModelsPanel(m_client, catalogPath());
  m_trouble = new TroubleshootingPanel(m_client);
  m_tasks = new TasksPanel(m_client, host);
  m_models->setModelsDir(modelsDir);
  auto* tasksDock = dock(tr("Tasks"), "LoupeTasksDock", m_tasks);
  auto* modelsDock = dock(tr("Models"), "LoupeModelsDock", m_models);
  auto* troubleDock = dock(tr("Troubleshooting"), "LoupeTroubleshootingDock", m_trouble);
  auto* editDock = dock(tr("Edit by words"), "LoupeEditDock", new EditPanel(m_client, host));
  host->addDockWidget(tasksDock, Qt::RightDockWidgetArea);
  host->addDockWidget(modelsDock, Qt::RightDockWidgetArea);
  host->addDockWidget(troubleDock, Qt::RightDockWidgetArea);
  host->addDockWidget(editDock, Qt::RightDockWidgetArea);
  if (auto* mw = qobject_cast<QMainWindow*>(host->mainWindow())) {  // one tabbed column
    mw->tabifyDockWidget(tasksDock, modelsDock);
    mw->tabifyDockWidget(modelsDock, troubleDock);
    mw->tabifyDockWidget(troubleDock, editDock);
    tasksDock->raise();
  }
  auto* selftest = new QAction(tr("Run Self-Test"), this);
  connect(selftest, &QAction::triggered, m_trouble, [this] { m_trouble->selftestButton()->click(); });
  host->addMenuAction(selftest);
  connect(m_models, &ModelsPanel::settingsChanged, this, [this] {
    QSettings st;
    st.beginGroup("loupe");
    st.setValue("modelsDir", m_models->modelsDir());
    st.setValue("device", m_models->device());
    st.setValue("precision", m_models->precision());
    restartRuntime();
  });
  connect(m_client, &LoupeClient::sessionOpened, this, [this](const QString&) {
    m_host->showStatus(m_client->sessionIsDemo() ? tr("Model ready: %1 (demo weights: tiny and random, see the Tasks panel)")
                                                       .arg(m_client->sessionName())
                                                 : tr("Model ready: %1").arg(m_client->sessionName()),
                       m_client->sessionIsDemo() ? 0 : 4000);
  });
  connect(m_client, &LoupeClient::sessionOpening, this, [](const QString& path) {
    QSettings st;
    st.beginGroup("loupe");
    st.setValue("lastModel", path);
  });
  // Open $LOUPE_OPEN_MODEL (the demo script sets it), else reopen the last model, once the window is up.
  const QString requested = qEnvironmentVariable("LOUPE_OPEN_MODEL");
  const QString last = !requested.isEmpty() ? requested : s.value("lastModel").toString();
  if (!last.isEmpty() && QFileInfo(last).isDir()) QTimer::singleShot(0, m_client, [this, last] { m_client->openSession(last); });
  return true;
}

void LoupePlugin::restartRuntime() {
  QString err;
  if (!m_client->start(m_models->device(), m_models->precision(), m_models->modelsDir(), &err))
    m_host->showStatus(tr("Loupe: %1").arg(err), 8000);
  m_trouble->refresh();
}

void LoupePlugin::shutdown() {
  delete m_client;  // cancels the job and frees the runtime before the window goes
  m_client = nullptr;
}

}  // namespace loupe::qt
