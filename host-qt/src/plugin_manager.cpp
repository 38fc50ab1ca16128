#include "plugin_manager.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QJsonObject>
#include <QLibrary>
#include <QPluginLoader>
#include <algorithm>
#include <utility>

#include "loupe_host/plugin.h"

namespace loupe {

PluginManager::PluginManager(HostContext* host, QObject* parent) : QObject(parent), m_host(host) {}

PluginManager::~PluginManager() { shutdownAll(); }

QStringList PluginManager::searchDirectories(const QStringList& extraDirs) {
  QStringList dirs = extraDirs;
  const QString env = qEnvironmentVariable("LOUPE_PLUGIN_PATH");
  dirs += env.split(QLatin1Char(':'), Qt::SkipEmptyParts);
  const QString exeDir = QCoreApplication::applicationDirPath();
  dirs << exeDir + QStringLiteral("/plugins") << exeDir + QStringLiteral("/../lib/loupe-plugins");
  QStringList unique;
  for (const QString& dir : dirs) {
    const QString clean = QDir::cleanPath(QDir(dir).absolutePath());
    if (!unique.contains(clean)) unique << clean;
  }
  return unique;
}

void PluginManager::loadFromDirectories(const QStringList& dirs) {
  for (const QString& dirPath : dirs) {
    const QDir dir(dirPath);
    if (!dir.exists()) continue;
    for (const QFileInfo& file : dir.entryInfoList(QDir::Files, QDir::Name))
      if (QLibrary::isLibrary(file.fileName())) loadFile(file.absoluteFilePath());
  }
}

bool PluginManager::loadFile(const QString& path) {
  PluginRecord record;
  record.path = path;
  const QFileInfo info(path);
  if (!info.exists()) return fail(record, tr("File not found."));
  const QString canonical = info.canonicalFilePath();
  if (m_triedFiles.contains(canonical)) return false;  // same file reached twice
  m_triedFiles << canonical;

  auto* loader = new QPluginLoader(canonical, this);
  const QString iid = loader->metaData().value(QStringLiteral("IID")).toString();
  if (iid.isEmpty()) {
    const bool loads = loader->load();
    const QString error = loads ? tr("Not a Qt plugin.") : loader->errorString();
    if (loads) loader->unload();
    delete loader;
    return fail(record, error);
  }
  if (iid != QLatin1String(LOUPE_HOST_PLUGIN_IID)) {
    delete loader;
    return fail(record, tr("Not a Loupe editor plugin (IID \"%1\", expected \"%2\").")
                            .arg(iid, QLatin1String(LOUPE_HOST_PLUGIN_IID)));
  }
  QObject* instance = loader->instance();
  auto* plugin = qobject_cast<HostPlugin*>(instance);
  if (!plugin) {
    const QString error = instance ? tr("The plugin object does not implement loupe::HostPlugin.")
                                   : loader->errorString();
    delete loader;
    return fail(record, error);
  }
  record.name = plugin->name();
  for (const PluginRecord& other : std::as_const(m_records))
    if (other.loaded && other.name == record.name)
      return fail(record, tr("A plugin named \"%1\" is already loaded from %2.").arg(record.name, other.path));

  QString error;
  if (!plugin->initialize(m_host, &error))
    return fail(record, error.isEmpty() ? tr("initialize() failed without a message.") : error);
  // Loaded plugins stay in memory until exit: their widgets and actions live in the window.
  record.loaded = true;
  m_plugins << plugin;
  m_records << record;
  emit recordAdded(record);
  return true;
}

bool PluginManager::fail(PluginRecord record, const QString& error) {
  record.error = error;
  m_records << record;
  emit recordAdded(record);
  return false;
}

void PluginManager::shutdownAll() {
  for (HostPlugin* plugin : std::exchange(m_plugins, {})) plugin->shutdown();
}

int PluginManager::failureCount() const {
  return int(std::count_if(m_records.cbegin(), m_records.cend(), [](const PluginRecord& r) { return !r.loaded; }));
}

}  // namespace loupe
