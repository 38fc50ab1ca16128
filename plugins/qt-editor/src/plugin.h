// The qt-editor plugin: brings Loupe's tasks, the model selector and the troubleshooting panel into
// host-qt. It meets the SDK only through loupe.h and the host only through loupe_host/plugin.h.
#pragma once
#include <QObject>
#include <QPointer>

#include "loupe_host/plugin.h"

namespace loupe::qt {

class LoupeClient;
class ModelsPanel;
class TasksPanel;
class TroubleshootingPanel;

class LoupePlugin : public QObject, public loupe::HostPlugin {
  Q_OBJECT
  Q_PLUGIN_METADATA(IID LOUPE_HOST_PLUGIN_IID)
  Q_INTERFACES(loupe::HostPlugin)

 public:
  QString name() const override { return QStringLiteral("Loupe"); }
  bool initialize(loupe::HostContext* host, QString* error) override;
  void shutdown() override;

 private:
  void restartRuntime();
  loupe::HostContext* m_host = nullptr;
  LoupeClient* m_client = nullptr;
  ModelsPanel* m_models = nullptr;
  TasksPanel* m_tasks = nullptr;
  TroubleshootingPanel* m_trouble = nullptr;
};

}  // namespace loupe::qt
