// A real editor plugin for the tests: a dock, a Loupe menu action, and a box overlay on every
// document that opens. Built a second time with LOUPE_TEST_PLUGIN_FAIL, where initialize() fails.
#include <QAction>
#include <QDockWidget>
#include <QLabel>

#include "loupe_host/plugin.h"

class TestPlugin : public QObject, public loupe::HostPlugin {
  Q_OBJECT
  Q_PLUGIN_METADATA(IID LOUPE_HOST_PLUGIN_IID)
  Q_INTERFACES(loupe::HostPlugin)

 public:
#ifdef LOUPE_TEST_PLUGIN_FAIL
  QString name() const override { return QStringLiteral("Failing test plugin"); }
  bool initialize(loupe::HostContext*, QString* error) override {
    *error = QStringLiteral("test plugin refuses to start");
    return false;
  }
#else
  QString name() const override { return QStringLiteral("Test plugin"); }
  bool initialize(loupe::HostContext* host, QString*) override {
    m_host = host;
    auto* dock = new QDockWidget(QStringLiteral("Test Plugin"));
    dock->setObjectName(QStringLiteral("TestPluginDock"));
    dock->setWidget(new QLabel(QStringLiteral("Hello from the test plugin"), dock));
    host->addDockWidget(dock, Qt::RightDockWidgetArea);

    auto* detect = new QAction(QStringLiteral("Detect Test Box"));
    detect->setObjectName(QStringLiteral("TestPluginDetect"));
    connect(detect, &QAction::triggered, this, &TestPlugin::detect);
    host->addMenuAction(detect);

    connect(host, &loupe::HostContext::documentChanged, this, &TestPlugin::detect);
    host->showStatus(QStringLiteral("Test plugin ready"));
    return true;
  }
#endif
  void shutdown() override { m_host = nullptr; }

 private:
  // The centre half of the image, as a detector would report it.
  void detect() {
    if (!m_host || !m_host->hasDocument()) return;
    const QSize size = m_host->image().size();
    m_host->addOverlays({loupe::Overlay::box(
        QRectF(size.width() / 4, size.height() / 4, size.width() / 2, size.height() / 2), QStringLiteral("test"), 0.9)});
  }

  loupe::HostContext* m_host = nullptr;
};

#include "test_plugin.moc"
