// The plugin's one door to the SDK: a runtime, the current session, and jobs run off the UI
// thread. Everything arrives back on the UI thread as signals. Only loupe.h is used.
#pragma once
#include <QImage>
#include <QList>
#include <QMap>
#include <QObject>
#include <QString>
#include <QStringList>
#include <atomic>
#include <mutex>
#include <thread>

#include "loupe/loupe.h"
#include "loupe_host/plugin.h"

namespace loupe::qt {

struct JobOutput {
  QString task;
  QString text;
  QString json;
  QList<loupe::Overlay> overlays;
  QList<QImage> images;
  QMap<QString, double> numbers;
};

// Input of a task, built on the UI thread.
struct TaskInput {
  QString task;
  QImage image;  // empty = none
  QImage mask;   // Grayscale8, empty = none
  QMap<QString, QString> strings;
  QMap<QString, qint64> ints;
  QMap<QString, double> floats;
  bool hasRegion = false;
  QRectF region;
};

class LoupeClient : public QObject {
  Q_OBJECT
 public:
  explicit LoupeClient(QObject* parent = nullptr);
  ~LoupeClient() override;

  // (Re)creates the runtime. Closes the session. False + message on failure.
  bool start(const QString& device, const QString& precision, const QString& modelsDir, QString* error);
  bool started() const { return m_runtime != nullptr; }
  QString diagnosticsJson() const;
  QString inspect(const QString& path) const;  // loupe_model_inspect JSON

  // Opens a model asynchronously: sessionOpened / sessionFailed.
  void openSession(const QString& path);
  bool hasSession() const { return m_session != nullptr; }
  QString sessionName() const { return m_sessionName; }
  QString sessionPath() const { return m_sessionPath; }
  // Demo weights shipped with Loupe (resources/demo-models/demo-*: tiny, random) are open.
  bool sessionIsDemo() const;
  QStringList sessionTasks() const { return m_sessionTasks; }

  // Runs a task on the session (or "selftest" on the runtime) asynchronously:
  // progress..., then finished or failed. One job at a time.
  bool run(const TaskInput& input, QString* error);
  bool busy() const { return m_busy.load(); }
  void cancel();

 signals:
  void logRecord(int level, const QString& message);
  void sessionOpening(const QString& path);
  void sessionOpened(const QString& description);
  void sessionFailed(const QString& error);
  void progress(int step, int total, const QString& stage, const QImage& preview);
  void finished(const loupe::qt::JobOutput& output);
  void failed(const QString& error, bool cancelled);

 private:
  static void onLog(void* user, loupe_log_level level, const char* message);
  static int onProgress(void* user, const loupe_progress* p);
  void joinWorker();
  void closeSession();

  loupe_runtime* m_runtime = nullptr;
  loupe_session* m_session = nullptr;
  QString m_sessionName;
  QString m_sessionPath;
  QStringList m_sessionTasks;
  std::mutex m_jobMutex;
  loupe_job* m_job = nullptr;
  std::thread m_worker;
  std::atomic<bool> m_busy{false};
  QByteArray m_device, m_modelsDir;
  loupe_precision m_precision = LOUPE_PRECISION_AUTO;
};

// A loupe_image view of a QImage (converted to RGBA8888 / Grayscale8 first by the caller).
loupe_image toLoupeImage(const QImage& image);
QImage fromLoupeImage(const loupe_image& image);

}  // namespace loupe::qt

Q_DECLARE_METATYPE(loupe::qt::JobOutput)
