#include "loupe_client.h"

#include "catalog.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMetaObject>
#include <vector>

namespace loupe::qt {

loupe_image toLoupeImage(const QImage& im) {
  loupe_image v;
  v.width = im.width();
  v.height = im.height();
  v.stride = static_cast<int32_t>(im.bytesPerLine());
  v.format = im.format() == QImage::Format_Grayscale8 ? LOUPE_GRAY8
             : im.format() == QImage::Format_RGB888   ? LOUPE_RGB8
                                                      : LOUPE_RGBA8;
  v.data = im.constBits();
  return v;
}

QImage fromLoupeImage(const loupe_image& im) {
  const auto fmt = im.format == LOUPE_GRAY8 ? QImage::Format_Grayscale8
                   : im.format == LOUPE_RGB8 ? QImage::Format_RGB888
                                             : QImage::Format_RGBA8888;
  return QImage(im.data, im.width, im.height, im.stride, fmt).copy();
}

QList<TaskDesc> describeTasks(loupe_session* session, QString* error) {
  auto str = [](const char* c) { return QString::fromUtf8(c ? c : ""); };
  QList<TaskDesc> out;
  const size_t n = loupe_task_count(session);
  for (size_t i = 0; i < n; ++i) {
    loupe_task_info t = LOUPE_TASK_INFO_INIT;
    if (loupe_task_describe(session, i, &t) != LOUPE_OK) {
      if (error) *error = str(loupe_last_error());
      return {};
    }
    TaskDesc d;
    d.name = str(t.name);
    d.label = str(t.label);
    d.help = str(t.help);
    d.group = str(t.group);
    d.inputs = t.inputs;
    d.required = t.required;
    d.outputs = t.outputs;
    d.textKey = str(t.text_key);
    d.textLabel = str(t.text_label);
    d.textHelp = str(t.text_help);
    d.runtime = t.runtime != 0;
    for (size_t k = 0; k < t.param_count; ++k) {
      loupe_param_info p = LOUPE_PARAM_INFO_INIT;
      if (loupe_task_param(session, i, k, &p) != LOUPE_OK) {
        if (error) *error = str(loupe_last_error());
        return {};
      }
      ParamDesc q;
      q.name = str(p.name);
      q.type = p.type;
      q.label = str(p.label);
      q.help = str(p.help);
      q.unit = str(p.unit);
      q.defaultNumber = p.default_number;
      q.defaultString = str(p.default_string);
      q.min = p.min;
      q.max = p.max;
      q.step = p.step;
      for (size_t c = 0; c < p.choice_count; ++c) q.choices << str(p.choices[c]);
      q.advanced = p.advanced != 0;
      d.params << q;
    }
    out << d;
  }
  return out;
}

LoupeClient::LoupeClient(QObject* parent) : QObject(parent) {
  qRegisterMetaType<loupe::qt::JobOutput>();
}

LoupeClient::~LoupeClient() {
  joinScan();
  cancelDownload();
  joinDownload();
  cancel();
  joinWorker();
  closeSession(false);
  closeEditSessions();
  loupe_runtime_free(m_runtime);
}

void LoupeClient::closeEditSessions() {
  loupe_session_close(m_editFinder);
  loupe_session_close(m_editPainter);
  m_editFinder = m_editPainter = nullptr;
  m_editFinderPath.clear();
  m_editPainterPath.clear();
}

loupe_session* LoupeClient::editSession(const QByteArray& path, loupe_session* current, const QByteArray& currentPath,
                                        loupe_session** kept, QByteArray* keptPath, QString* error) {
  if (path.isEmpty()) return nullptr;
  if (current && path == currentPath) return current;
  if (*kept && path == *keptPath) return *kept;
  loupe_session_close(*kept);
  *kept = nullptr;
  keptPath->clear();
  if (loupe_session_open(kept, m_runtime, path.constData(), nullptr) != LOUPE_OK) {
    *kept = nullptr;
    if (error && error->isEmpty()) *error = tr("%1: %2").arg(QString::fromUtf8(path), QString::fromUtf8(loupe_last_error()));
    return nullptr;
  }
  *keptPath = path;
  return *kept;
}

void LoupeClient::joinWorker() {
  if (m_worker.joinable()) m_worker.join();
}

void LoupeClient::closeSession(bool notify) {
  const bool wasOpen = m_session != nullptr;
  loupe_session_close(m_session);
  m_session = nullptr;
  m_sessionName.clear();
  m_sessionPath.clear();
  m_sessionTasks.clear();
  m_appliedVae.clear();
  m_appliedLora.clear();
  m_appliedLoraWeight = 0.0;
  if (wasOpen && notify) emit sessionClosed();
}

const TaskDesc* LoupeClient::sessionTask(const QString& name) const {
  for (const auto& t : m_sessionTasks)
    if (t.name == name) return &t;
  return nullptr;
}

bool LoupeClient::sessionIsDemo() const {
  return m_session && isDemoModelFolder(m_sessionPath);
}

void LoupeClient::onLog(void* user, loupe_log_level level, const char* message) {
  auto* self = static_cast<LoupeClient*>(user);
  const QString msg = QString::fromUtf8(message);
  QMetaObject::invokeMethod(self, [self, level, msg] { emit self->logRecord(int(level), msg); }, Qt::QueuedConnection);
}

bool LoupeClient::start(const QString& device, const QString& precision, const QString& modelsDir, QString* error) {
  joinScan();  // it reads the runtime's models folder
  cancelDownload();  // it keeps its .part: downloading the entry again continues from there
  joinDownload();
  cancel();
  joinWorker();
  closeSession();
  closeEditSessions();
  loupe_runtime_free(m_runtime);
  m_runtime = nullptr;
  m_device = device.toUtf8();
  m_modelsDir = modelsDir.toUtf8();
  m_precision = precision == "fp32" ? LOUPE_PRECISION_FP32
                : precision == "fp16" ? LOUPE_PRECISION_FP16
                : precision == "bf16" ? LOUPE_PRECISION_BF16
                                      : LOUPE_PRECISION_AUTO;
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  ro.device = m_device.constData();
  ro.precision = m_precision;
  ro.models_dir = m_modelsDir.isEmpty() ? nullptr : m_modelsDir.constData();
  ro.log_fn = &LoupeClient::onLog;
  ro.log_user = this;
  ro.log_level = LOUPE_LOG_DEBUG;
  if (loupe_runtime_create(&m_runtime, &ro) != LOUPE_OK) {
    if (error) *error = QString::fromUtf8(loupe_last_error());
    m_runtime = nullptr;
    return false;
  }
  return true;
}

QString LoupeClient::diagnosticsJson() const {
  if (!m_runtime) return {};
  char* json = nullptr;
  if (loupe_runtime_diagnostics(m_runtime, &json) != LOUPE_OK) return {};
  QString out = QString::fromUtf8(json);
  loupe_string_free(json);
  return out;
}

QString LoupeClient::inspect(const QString& path) const {
  char* json = nullptr;
  const QByteArray p = path.toUtf8();
  if (loupe_model_inspect(m_runtime, p.constData(), &json) != LOUPE_OK) {
    QJsonObject problem{{"severity", "error"}, {"message", QString::fromUtf8(loupe_last_error())}};
    return QString::fromUtf8(QJsonDocument(QJsonObject{{"problems", QJsonArray{problem}}}).toJson());
  }
  QString out = QString::fromUtf8(json);
  loupe_string_free(json);
  return out;
}

void LoupeClient::openSession(const QString& path) {
  if (!m_runtime || m_busy.exchange(true)) {
    emit sessionFailed(m_runtime ? tr("Busy: wait for the running job or cancel it.") : tr("The runtime is not started."));
    return;
  }
  joinWorker();
  closeSession();
  emit sessionOpening(path);
  const QByteArray p = path.toUtf8();
  loupe_runtime* rt = m_runtime;
  m_worker = std::thread([this, rt, p] {
    loupe_session* s = nullptr;
    const loupe_status st = loupe_session_open(&s, rt, p.constData(), nullptr);
    QString err = st == LOUPE_OK ? QString() : QString::fromUtf8(loupe_last_error());
    QString desc;
    QList<TaskDesc> tasks;
    if (s) {
      tasks = describeTasks(s, &err);
      loupe_session_info info = LOUPE_SESSION_INFO_INIT;
      if (loupe_session_describe(s, &info) == LOUPE_OK) {
        desc = QStringLiteral("%1 (%2, %3, %4)").arg(QString::fromUtf8(info.variant), QString::fromUtf8(info.device),
                                                     QString::fromUtf8(info.dtype), formatBytes(qint64(info.bytes)));
      }
    }
    QMetaObject::invokeMethod(this, [this, s, err, desc, tasks, p] {
      m_busy = false;
      if (!s) {
        emit sessionFailed(err);
        return;
      }
      m_session = s;
      m_sessionPath = QString::fromUtf8(p);
      m_sessionName = desc;
      m_sessionTasks = tasks;
      emit sessionOpened(desc);
    }, Qt::QueuedConnection);
  });
}

int LoupeClient::onProgress(void* user, const loupe_progress* p) {
  auto* self = static_cast<LoupeClient*>(user);
  QImage preview = p->preview ? fromLoupeImage(*p->preview) : QImage();
  const int step = p->step, total = p->total;
  const QString stage = QString::fromUtf8(p->stage ? p->stage : "");
  QMetaObject::invokeMethod(self, [self, step, total, stage, preview] { emit self->progress(step, total, stage, preview); },
                            Qt::QueuedConnection);
  return 1;  // cancel goes through loupe_job_cancel
}

bool LoupeClient::run(const TaskInput& in, QString* error) {
  auto fail = [&](const QString& m) {
    if (error) *error = m;
    return false;
  };
  if (!m_runtime) return fail(tr("The runtime is not started."));
  const QByteArray task = in.task.toUtf8();
  // Runtime tasks (the self-test) run on the runtime, the rest on the session: the table says which.
  bool runtimeTask = false;
  {
    size_t index = 0;
    loupe_task_info info = LOUPE_TASK_INFO_INIT;
    if (loupe_task_find(nullptr, task.constData(), &index) == LOUPE_OK && loupe_task_describe(nullptr, index, &info) == LOUPE_OK)
      runtimeTask = info.runtime != 0;
  }
  const bool editTask = in.task == QLatin1String("edit");  // two sessions: loupe_edit_submit
  if (!runtimeTask && !m_session) return fail(tr("Open a model first (Models panel)."));
  if (m_busy.exchange(true)) return fail(tr("A job is already running: wait for it or cancel it."));
  joinWorker();

  loupe_request* rq = nullptr;
  QString err;
  auto check = [&](loupe_status st) {
    if (st != LOUPE_OK && err.isEmpty()) err = QString::fromUtf8(loupe_last_error());
  };
  check(loupe_request_create(&rq, task.constData()));
  if (err.isEmpty()) {
    if (!in.image.isNull()) {
      const QImage rgba = in.image.convertToFormat(QImage::Format_RGBA8888);
      const loupe_image v = toLoupeImage(rgba);
      check(loupe_request_set_image(rq, &v));
    }
    if (!in.mask.isNull()) {
      const QImage g = in.mask.convertToFormat(QImage::Format_Grayscale8);
      const loupe_image v = toLoupeImage(g);
      check(loupe_request_set_mask(rq, &v));
    }
    for (auto it = in.strings.begin(); it != in.strings.end(); ++it)
      check(loupe_request_set_string(rq, it.key().toUtf8().constData(), it.value().toUtf8().constData()));
    for (auto it = in.ints.begin(); it != in.ints.end(); ++it)
      check(loupe_request_set_int(rq, it.key().toUtf8().constData(), it.value()));
    for (auto it = in.floats.begin(); it != in.floats.end(); ++it)
      check(loupe_request_set_float(rq, it.key().toUtf8().constData(), it.value()));
    if (in.hasRegion)
      check(loupe_request_set_region(rq, float(in.region.left()), float(in.region.top()), float(in.region.right()),
                                     float(in.region.bottom())));
  }
  if (!err.isEmpty()) {
    loupe_request_free(rq);
    m_busy = false;
    return fail(err);
  }
  // The worker applies the session's VAE / LoRA when they change (loading a VAE or merging a LoRA
  // takes a while), then submits the job and waits for it.
  loupe_session* session = m_session;
  const bool vaeChange = !runtimeTask && in.applyAdapters && in.vae != m_appliedVae;
  const bool loraChange =
      !runtimeTask && in.applyAdapters && (in.lora != m_appliedLora || (!in.lora.isEmpty() && in.loraWeight != m_appliedLoraWeight));
  const QByteArray vae = in.vae.toUtf8(), lora = in.lora.toUtf8(), oldLora = m_appliedLora.toUtf8();
  const double loraWeight = in.loraWeight;
  const QByteArray finderPath = in.finder.toUtf8(), painterPath = in.painter.toUtf8(), sessionPath = m_sessionPath.toUtf8();
  {
    std::lock_guard<std::mutex> lock(m_jobMutex);
    m_cancelRequested = false;
  }
  m_worker = std::thread([this, rq, runtimeTask, session, vaeChange, loraChange, vae, lora, oldLora, loraWeight, editTask,
                          finderPath, painterPath, sessionPath] {
    QString adapterErr;
    loupe_session *finder = nullptr, *painter = nullptr;
    if (editTask) {
      finder = editSession(finderPath, session, sessionPath, &m_editFinder, &m_editFinderPath, &adapterErr);
      painter = editSession(painterPath, session, sessionPath, &m_editPainter, &m_editPainterPath, &adapterErr);
    }
    bool vaeOk = !vaeChange, loraOk = !loraChange, loraRemoved = false;
    if (vaeChange) {
      vaeOk = loupe_session_set_vae(session, vae.isEmpty() ? nullptr : vae.constData()) == LOUPE_OK;
      if (!vaeOk) adapterErr = QString::fromUtf8(loupe_last_error());
    }
    if (adapterErr.isEmpty() && loraChange) {
      if (!oldLora.isEmpty() && oldLora != lora) loraRemoved = loupe_session_set_lora(session, oldLora.constData(), 0.0f) == LOUPE_OK;
      loraOk = lora.isEmpty() || loupe_session_set_lora(session, lora.constData(), float(loraWeight)) == LOUPE_OK;
      if (!loraOk) adapterErr = QString::fromUtf8(loupe_last_error());
    }
    QMetaObject::invokeMethod(this, [this, vaeChange, vaeOk, loraChange, loraOk, loraRemoved, vae, lora, loraWeight] {
      if (vaeChange && vaeOk) m_appliedVae = QString::fromUtf8(vae);
      if (loraChange && loraOk) {
        m_appliedLora = QString::fromUtf8(lora);
        m_appliedLoraWeight = loraWeight;
      } else if (loraRemoved) {
        m_appliedLora.clear();
      }
    }, Qt::QueuedConnection);
    loupe_job* job = nullptr;
    QString submitErr = adapterErr;
    if (submitErr.isEmpty() &&
        (editTask      ? loupe_edit_submit(&job, m_runtime, finder, painter, rq, &LoupeClient::onProgress, this)
         : runtimeTask ? loupe_runtime_submit(&job, m_runtime, rq, &LoupeClient::onProgress, this)
                       : loupe_session_submit(&job, session, rq, &LoupeClient::onProgress, this)) != LOUPE_OK)
      submitErr = QString::fromUtf8(loupe_last_error());
    loupe_request_free(rq);
    if (!submitErr.isEmpty()) {
      QMetaObject::invokeMethod(this, [this, submitErr] {
        m_busy = false;
        emit failed(submitErr, false);
      }, Qt::QueuedConnection);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m_jobMutex);
      m_job = job;
      if (m_cancelRequested) loupe_job_cancel(job);
    }
    loupe_job_wait(job, -1);
    loupe_result* res = nullptr;
    const loupe_status st = loupe_job_take_result(&res, job);
    const QString err = st == LOUPE_OK ? QString() : QString::fromUtf8(loupe_last_error());
    JobOutput out;
    if (res) {
      out.task = QString::fromUtf8(loupe_result_task(res));
      out.text = QString::fromUtf8(loupe_result_text(res));
      out.json = QString::fromUtf8(loupe_result_json(res));
      for (size_t i = 0; i < loupe_result_box_count(res); ++i) {
        loupe_box b = LOUPE_BOX_INIT;
        loupe_result_get_box(res, i, &b);
        out.overlays << loupe::Overlay::box(QRectF(QPointF(b.x0, b.y0), QPointF(b.x1, b.y1)),
                                            QString::fromUtf8(b.label), b.score);
      }
      for (size_t i = 0; i < loupe_result_polygon_count(res); ++i) {
        loupe_polygon p = LOUPE_POLYGON_INIT;
        loupe_result_get_polygon(res, i, &p);
        QPolygonF poly;
        for (size_t k = 0; k < p.point_count; ++k) poly << QPointF(p.points[2 * k], p.points[2 * k + 1]);
        out.overlays << (p.kind == LOUPE_SHAPE_QUAD ? loupe::Overlay::quad(poly, QString::fromUtf8(p.label))
                                                     : loupe::Overlay::polygon(poly, QString::fromUtf8(p.label)));
      }
      for (size_t i = 0; i < loupe_result_image_count(res); ++i) {
        loupe_image im;
        loupe_result_image(res, i, &im);
        out.images << fromLoupeImage(im);
      }
      const auto numbers = QJsonDocument::fromJson(out.json.toUtf8()).object().value("numbers").toObject();
      for (auto it = numbers.begin(); it != numbers.end(); ++it) out.numbers[it.key()] = it.value().toDouble();
      loupe_result_free(res);
    }
    {
      std::lock_guard<std::mutex> lock(m_jobMutex);
      m_job = nullptr;
    }
    loupe_job_free(job);
    QMetaObject::invokeMethod(this, [this, st, err, out] {
      m_busy = false;
      if (st == LOUPE_OK) emit finished(out);
      else emit failed(err, st == LOUPE_ERROR_CANCELLED);
    }, Qt::QueuedConnection);
  });
  return true;
}

void LoupeClient::cancel() {
  std::lock_guard<std::mutex> lock(m_jobMutex);
  if (m_job) loupe_job_cancel(m_job);
  else if (m_busy) m_cancelRequested = true;
}

// ------------------------------------------------------------------ discovery and downloads

QString LoupeClient::scanModels(const QStringList& extraDirs, const QString& catalogPath, const QString& modelsDir,
                                bool skipDefaults, QString* error) const {
  QList<QByteArray> dirs;
  for (const auto& d : extraDirs)
    if (!d.isEmpty()) dirs << d.toUtf8();
  std::vector<const char*> ptrs;
  for (const auto& d : dirs) ptrs.push_back(d.constData());
  const QByteArray catalog = catalogPath.toUtf8(), models = modelsDir.toUtf8();
  loupe_scan_options o = LOUPE_SCAN_OPTIONS_INIT;
  o.dirs = ptrs.empty() ? nullptr : ptrs.data();
  o.dir_count = ptrs.size();
  o.skip_default_locations = skipDefaults ? 1 : 0;
  o.catalog_path = catalog.isEmpty() ? nullptr : catalog.constData();
  o.models_dir = models.isEmpty() ? nullptr : models.constData();
  char* json = nullptr;
  if (loupe_models_scan(m_runtime, &o, &json) != LOUPE_OK) {
    if (error) *error = QString::fromUtf8(loupe_last_error());
    return {};
  }
  QString out = QString::fromUtf8(json);
  loupe_string_free(json);
  return out;
}

void LoupeClient::scanModelsAsync(const QStringList& extraDirs, const QString& catalogPath, const QString& modelsDir) {
  m_scanDirs = extraDirs;
  m_scanCatalog = catalogPath;
  m_scanModelsDir = modelsDir;
  if (m_scanning) {
    m_scanPending = true;
    return;
  }
  joinScan();  // the previous one has ended
  m_scanning = true;
  m_scanPending = false;
  m_scanWorker = std::thread([this, dirs = m_scanDirs, catalog = m_scanCatalog, models = m_scanModelsDir] {
    QString err;
    const QString json = scanModels(dirs, catalog, models, false, &err);
    QMetaObject::invokeMethod(this, [this, json, err] {
      m_scanning = false;
      if (m_scanPending) {
        scanModelsAsync(m_scanDirs, m_scanCatalog, m_scanModelsDir);
        return;
      }
      joinScan();
      emit modelsScanned(json, err);
    }, Qt::QueuedConnection);
  });
}

void LoupeClient::joinScan() {
  if (m_scanWorker.joinable()) m_scanWorker.join();
}

void LoupeClient::joinDownload() {
  if (m_downloadWorker.joinable()) m_downloadWorker.join();
}

void LoupeClient::cancelDownload() {
  std::lock_guard<std::mutex> lock(m_downloadMutex);
  if (m_downloadJob) loupe_job_cancel(m_downloadJob);
}

int LoupeClient::onDownloadProgress(void* user, const loupe_progress* p) {
  auto* self = static_cast<LoupeClient*>(user);
  const qint64 step = p->step, total = p->total;
  const QString stage = QString::fromUtf8(p->stage ? p->stage : "");
  QMetaObject::invokeMethod(self, [self, step, total, stage] { emit self->downloadProgress(step, total, stage); },
                            Qt::QueuedConnection);
  return 1;  // cancel goes through loupe_job_cancel
}

bool LoupeClient::download(const QString& catalogId, const QString& catalogPath, QString* error) {
  auto fail = [&](const QString& m) {
    if (error) *error = m;
    return false;
  };
  if (!m_runtime) return fail(tr("The runtime is not started."));
  if (m_downloading.exchange(true)) return fail(tr("A download is running: wait for it or cancel it."));
  joinDownload();
  loupe_request* rq = nullptr;
  loupe_job* job = nullptr;
  const QByteArray id = catalogId.toUtf8(), catalog = catalogPath.toUtf8();
  loupe_status st = loupe_request_create(&rq, "download");
  if (st == LOUPE_OK) st = loupe_request_set_string(rq, "catalog_id", id.constData());
  if (st == LOUPE_OK && !catalog.isEmpty()) st = loupe_request_set_string(rq, "catalog", catalog.constData());
  if (st == LOUPE_OK) st = loupe_runtime_submit(&job, m_runtime, rq, &LoupeClient::onDownloadProgress, this);
  const QString err = st == LOUPE_OK ? QString() : QString::fromUtf8(loupe_last_error());
  loupe_request_free(rq);
  if (st != LOUPE_OK) {
    m_downloading = false;
    return fail(err);
  }
  {
    std::lock_guard<std::mutex> lock(m_downloadMutex);
    m_downloadJob = job;
  }
  m_downloadWorker = std::thread([this, job] {
    loupe_job_wait(job, -1);
    loupe_result* res = nullptr;
    const loupe_status st = loupe_job_take_result(&res, job);
    const QString err = st == LOUPE_OK ? QString() : QString::fromUtf8(loupe_last_error());
    const QString path = res ? QString::fromUtf8(loupe_result_text(res)) : QString();
    loupe_result_free(res);
    {
      std::lock_guard<std::mutex> lock(m_downloadMutex);
      m_downloadJob = nullptr;
    }
    loupe_job_free(job);
    m_downloading = false;
    QMetaObject::invokeMethod(this, [this, st, err, path] {
      if (st == LOUPE_OK) emit downloadFinished(path);
      else emit downloadFailed(err, st == LOUPE_ERROR_CANCELLED);
    }, Qt::QueuedConnection);
  });
  return true;
}

}  // namespace loupe::qt
