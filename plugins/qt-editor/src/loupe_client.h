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

// A parameter of a task as the session describes it (loupe_task_param), copied into Qt types.
struct ParamDesc {
  QString name;  // the request key
  loupe_param_type type = LOUPE_PARAM_INT;
  QString label, help, unit;
  double defaultNumber = 0;  // INT, FLOAT, BOOL
  QString defaultString;     // STRING, CHOICE
  double min = 0, max = 0, step = 0;
  QStringList choices;
  bool advanced = false;
};

// A task as the session offers it (loupe_task_describe), with its parameters.
struct TaskDesc {
  QString name, label, help, group;
  uint32_t inputs = 0, required = 0, outputs = 0;  // LOUPE_INPUT_* / LOUPE_OUTPUT_* bits
  QString textKey, textLabel, textHelp;            // textKey "" = it takes no text
  bool runtime = false;
  QList<ParamDesc> params;
};

// The tasks a session offers (session NULL: the library's whole table), or an empty list + *error.
QList<TaskDesc> describeTasks(loupe_session* session, QString* error = nullptr);

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
  // Stable Diffusion sessions: applied before the job when they differ from what the session has
  // (loupe_session_set_vae / loupe_session_set_lora, off the UI thread).
  bool applyAdapters = false;
  QString vae;  // "" = the checkpoint's own VAE
  QString lora; // "" = none
  double loraWeight = 1.0;
  // Task "edit" (loupe_edit_submit): the model folders of the finder and the painter ("" = none;
  // the open session's folder reuses it). Opened on the job's thread when first needed, kept open.
  QString finder, painter;
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
  // The tasks the open session offers, as it describes them (read once when it opened).
  const QList<TaskDesc>& sessionTasks() const { return m_sessionTasks; }
  const TaskDesc* sessionTask(const QString& name) const;
  QString modelsDir() const { return QString::fromUtf8(m_modelsDir); }
  // The external VAE and LoRA the session has now ("" = none).
  QString appliedVae() const { return m_appliedVae; }
  QString appliedLora() const { return m_appliedLora; }

  // Runs a task on the session (or "selftest" on the runtime) asynchronously:
  // progress..., then finished or failed. One job at a time.
  bool run(const TaskInput& input, QString* error);
  bool busy() const { return m_busy.load(); }
  void cancel();

  // Models on this computer (loupe_models_scan: the Hugging Face cache and web-UI folders unless
  // skipDefaults, the models folder modelsDir and extraDirs), matched to the catalog at catalogPath
  // ("" = the SDK's own) whose entries are judged against modelsDir: the SDK's JSON, or "" + *error.
  QString scanModels(const QStringList& extraDirs, const QString& catalogPath, const QString& modelsDir,
                     bool skipDefaults, QString* error) const;
  // The full scan on a thread of its own: modelsScanned arrives on the UI thread. Asked for while a
  // scan runs, it runs once that one ends (with the latest arguments; the older result is dropped).
  void scanModelsAsync(const QStringList& extraDirs, const QString& catalogPath, const QString& modelsDir);
  bool scanning() const { return m_scanning; }
  // Downloads a catalog entry into the models folder (task "download") on a thread of its own,
  // beside the task jobs; one download at a time: downloadProgress..., then downloadFinished or
  // downloadFailed.
  bool download(const QString& catalogId, const QString& catalogPath, QString* error);
  bool downloading() const { return m_downloading.load(); }
  void cancelDownload();

 signals:
  void logRecord(int level, const QString& message);
  void sessionOpening(const QString& path);
  void sessionOpened(const QString& description);
  void sessionClosed();  // the open session was closed (another model opens, the runtime restarts)
  void sessionFailed(const QString& error);
  void progress(int step, int total, const QString& stage, const QImage& preview);
  void finished(const loupe::qt::JobOutput& output);
  void failed(const QString& error, bool cancelled);
  void downloadProgress(qint64 doneKiB, qint64 totalKiB, const QString& stage);
  void downloadFinished(const QString& path);
  void downloadFailed(const QString& error, bool cancelled);
  void modelsScanned(const QString& json, const QString& error);

 private:
  static void onLog(void* user, loupe_log_level level, const char* message);
  static int onProgress(void* user, const loupe_progress* p);
  static int onDownloadProgress(void* user, const loupe_progress* p);
  void joinDownload();
  void joinScan();
  void joinWorker();
  void closeSession(bool notify = true);
  void closeEditSessions();
  // The session for an edit part: the open session when it is that folder, else one kept for edits.
  // Job thread only; "" = none. Null + *error when it does not open.
  loupe_session* editSession(const QByteArray& path, loupe_session* current, const QByteArray& currentPath,
                             loupe_session** kept, QByteArray* keptPath, QString* error);

  loupe_runtime* m_runtime = nullptr;
  loupe_session* m_session = nullptr;
  // Task "edit": sessions kept for the finder and the painter (used by the job thread while busy;
  // closed when the runtime restarts).
  loupe_session* m_editFinder = nullptr;
  loupe_session* m_editPainter = nullptr;
  QByteArray m_editFinderPath, m_editPainterPath;
  QString m_sessionName;
  QString m_sessionPath;
  QList<TaskDesc> m_sessionTasks;
  QString m_appliedVae, m_appliedLora;
  double m_appliedLoraWeight = 0.0;
  bool m_cancelRequested = false;  // guarded by m_jobMutex: Cancel before the job was submitted
  std::mutex m_jobMutex;
  loupe_job* m_job = nullptr;
  std::thread m_worker;
  std::atomic<bool> m_busy{false};
  std::mutex m_downloadMutex;
  loupe_job* m_downloadJob = nullptr;  // guarded by m_downloadMutex
  std::thread m_downloadWorker;
  std::atomic<bool> m_downloading{false};
  std::thread m_scanWorker;
  bool m_scanning = false;  // UI thread only, like the rest below
  bool m_scanPending = false;
  QStringList m_scanDirs;
  QString m_scanCatalog;
  QString m_scanModelsDir;
  QByteArray m_device, m_modelsDir;
  loupe_precision m_precision = LOUPE_PRECISION_AUTO;
};

// A loupe_image view of a QImage (converted to RGBA8888 / Grayscale8 first by the caller).
loupe_image toLoupeImage(const QImage& image);
QImage fromLoupeImage(const loupe_image& image);

}  // namespace loupe::qt

Q_DECLARE_METATYPE(loupe::qt::JobOutput)
