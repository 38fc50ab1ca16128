// Finds, loads and initializes HostPlugins; records every attempt so failures can be shown.
#pragma once

#include <QList>
#include <QObject>
#include <QStringList>

namespace loupe {

class HostContext;
class HostPlugin;

struct PluginRecord {
  QString path;
  QString name;   // the plugin's name(), once known
  bool loaded = false;
  QString error;  // why it did not load; empty when loaded
};

class PluginManager : public QObject {
  Q_OBJECT

 public:
  PluginManager(HostContext* host, QObject* parent = nullptr);
  ~PluginManager() override;

  // Where to look, in order: `extraDirs` (e.g. --plugin-dir), $LOUPE_PLUGIN_PATH,
  // <exe dir>/plugins, <exe dir>/../lib/loupe-plugins.
  static QStringList searchDirectories(const QStringList& extraDirs);

  // Tries every library file in `dirs` (missing folders are skipped).
  void loadFromDirectories(const QStringList& dirs);
  // Tries one file; returns whether it loaded and initialized. Never throws or aborts.
  bool loadFile(const QString& path);
  // Calls shutdown() on every initialized plugin, once.
  void shutdownAll();

  const QList<PluginRecord>& records() const { return m_records; }
  int failureCount() const;

 signals:
  void recordAdded(const loupe::PluginRecord& record);

 private:
  bool fail(PluginRecord record, const QString& error);

  HostContext* m_host;
  QList<PluginRecord> m_records;
  QList<HostPlugin*> m_plugins;
  QStringList m_triedFiles;  // canonical paths
};

}  // namespace loupe
