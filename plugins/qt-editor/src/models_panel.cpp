#include "models_panel.h"

#include <algorithm>

#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "loupe_client.h"

namespace loupe::qt {

ModelsPanel::ModelsPanel(LoupeClient* client, const QString& catalogPath, QWidget* parent)
    : QWidget(parent), m_client(client) {
  setObjectName("LoupeModelsPanel");
  m_catalogPath = catalogPath;
  m_extraDirs = QSettings().value("loupe/scanDirs").toStringList();
  auto* lay = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  auto* dirRow = new QHBoxLayout;
  m_dir = new QLineEdit(this);
  m_dir->setObjectName("modelsDir");
  auto* browse = new QPushButton(tr("Browse..."), this);
  dirRow->addWidget(m_dir);
  dirRow->addWidget(browse);
  form->addRow(tr("Models folder"), dirRow);
  m_device = new QComboBox(this);
  m_device->addItems({"auto", "cpu", "cuda:0", "cuda:1"});
  form->addRow(tr("Device"), m_device);
  m_precision = new QComboBox(this);
  m_precision->addItems({"auto", "fp16", "bf16", "fp32"});
  form->addRow(tr("Precision"), m_precision);
  lay->addLayout(form);
  m_recommend = new QLabel(this);
  m_recommend->setWordWrap(true);
  lay->addWidget(m_recommend);
  m_tree = new QTreeWidget(this);
  m_tree->setHeaderLabels({tr("Variant"), tr("Status"), tr("Size"), tr("Memory"), tr("License")});
  m_tree->setRootIsDecorated(false);
  m_tree->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  lay->addWidget(m_tree, 1);
  auto* row = new QHBoxLayout;
  m_open = new QPushButton(tr("Use this model"), this);
  m_open->setObjectName("openModel");
  auto* check = new QPushButton(tr("Check a folder..."), this);
  row->addWidget(m_open);
  row->addWidget(check);
  m_download = new QPushButton(tr("Download"), this);
  m_download->setObjectName("downloadModel");
  m_download->setToolTip(tr("Download the selected model from Hugging Face into the models folder"));
  m_download->setEnabled(false);
  row->addWidget(m_download);
  m_cancelDownload = new QPushButton(tr("Cancel download"), this);
  m_cancelDownload->setObjectName("cancelDownload");
  m_cancelDownload->setEnabled(false);
  row->addWidget(m_cancelDownload);
  lay->addLayout(row);
  m_downloadProgress = new QProgressBar(this);
  m_downloadProgress->setObjectName("downloadProgress");
  m_downloadProgress->hide();
  lay->addWidget(m_downloadProgress);
  m_downloadState = new QLabel(this);
  m_downloadState->setObjectName("downloadState");
  m_downloadState->setWordWrap(true);
  lay->addWidget(m_downloadState);
  m_busy = new QProgressBar(this);
  m_busy->setRange(0, 0);
  m_busy->hide();
  lay->addWidget(m_busy);
  m_state = new QLabel(tr("No model loaded."), this);
  m_state->setObjectName("sessionState");
  m_state->setWordWrap(true);
  lay->addWidget(m_state);
  m_problems = new QListWidget(this);
  m_problems->setWordWrap(true);
  m_problems->setMaximumHeight(110);
  lay->addWidget(m_problems);
  // Models already on this computer.
  auto* foundRow = new QHBoxLayout;
  m_foundLabel = new QLabel(this);
  m_foundLabel->setObjectName("foundState");
  foundRow->addWidget(m_foundLabel, 1);
  auto* addDir = new QPushButton(tr("Add folder..."), this);
  addDir->setObjectName("addScanFolder");
  foundRow->addWidget(addDir);
  lay->addLayout(foundRow);
  m_found = new QTreeWidget(this);
  m_found->setObjectName("foundModels");
  m_found->setHeaderLabels({tr("Name"), tr("Kind"), tr("Model"), tr("Precision"), tr("Size"), tr("Where")});
  m_found->setRootIsDecorated(false);
  m_found->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  lay->addWidget(m_found, 1);
  connect(addDir, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, tr("A folder with models (e.g. a web UI's folder)"));
    if (!d.isEmpty()) addExtraDir(d);
  });
  connect(m_found, &QTreeWidget::itemDoubleClicked, this, [this](QTreeWidgetItem* item) {
    if (item && item->data(0, Qt::UserRole + 1).toBool()) m_client->openSession(item->data(0, Qt::UserRole).toString());
  });
  connect(m_tree, &QTreeWidget::currentItemChanged, this, [this] { updateDownloadButton(); });
  connect(client, &LoupeClient::modelsScanned, this, [this](const QString& json, const QString& err) {
    m_foundDoc = QJsonDocument::fromJson(json.toUtf8()).object();
    if (!err.isEmpty()) m_problems->addItem(tr("Looking for models on this computer: %1").arg(err));
    listFound();
    listVariants();  // a catalog variant found by the scan is installed where it was found
  });
  connect(m_download, &QPushButton::clicked, this, [this] {
    if (auto* item = m_tree->currentItem()) downloadVariant(item->data(0, Qt::UserRole).toString());
  });
  connect(m_cancelDownload, &QPushButton::clicked, client, &LoupeClient::cancelDownload);
  connect(client, &LoupeClient::downloadProgress, this, [this](qint64 done, qint64 total, const QString& stage) {
    m_downloadProgress->show();
    m_downloadProgress->setRange(0, total > 0 ? int(std::min<qint64>(total, INT32_MAX)) : 0);
    if (total > 0) m_downloadProgress->setValue(int(std::min(done, total)));
    if (!stage.isEmpty() && stage != QLatin1String("resolve"))
      m_downloadState->setText(tr("%1: %2 of %3").arg(stage, formatBytes(done << 10), formatBytes(total << 10)));
  });
  connect(client, &LoupeClient::downloadFinished, this, [this](const QString& path) {
    m_downloadProgress->hide();
    m_cancelDownload->setEnabled(false);
    m_downloadState->setText(tr("Downloaded into %1").arg(path));
    rescan();
  });
  connect(client, &LoupeClient::downloadFailed, this, [this](const QString& err, bool cancelled) {
    m_downloadProgress->hide();
    m_cancelDownload->setEnabled(false);
    m_downloadState->setText(cancelled ? tr("Download cancelled. What was downloaded is kept: Download continues from there.")
                                       : tr("Download failed: %1").arg(err));
    updateDownloadButton();
  });

  connect(browse, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, tr("Models folder"), m_dir->text());
    if (!d.isEmpty()) setModelsDir(d);
  });
  connect(m_dir, &QLineEdit::editingFinished, this, [this] {
    rescan();
    emit settingsChanged();
  });
  connect(m_device, &QComboBox::currentTextChanged, this, [this] { emit settingsChanged(); });
  connect(m_precision, &QComboBox::currentTextChanged, this, [this] {
    listVariants();  // the memory each needs
    emit settingsChanged();
  });
  connect(m_open, &QPushButton::clicked, this, [this] {
    if (auto* item = m_tree->currentItem()) openVariant(item->data(0, Qt::UserRole).toString());
  });
  connect(check, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, tr("Check a model folder"), m_dir->text());
    if (!d.isEmpty()) checkFolder(d);
  });
  connect(client, &LoupeClient::sessionOpening, this, [this](const QString& path) {
    m_busy->show();
    m_open->setEnabled(false);
    m_state->setText(tr("Loading %1 ...").arg(path));
  });
  connect(client, &LoupeClient::sessionOpened, this, [this](const QString& desc) {
    m_busy->hide();
    m_open->setEnabled(true);
    m_state->setText(tr("Loaded: %1").arg(desc));
  });
  connect(client, &LoupeClient::sessionFailed, this, [this](const QString& err) {
    m_busy->hide();
    m_open->setEnabled(true);
    m_state->setText(tr("Could not load the model: %1").arg(err));
  });
}

void ModelsPanel::setModelsDir(const QString& dir) {
  m_dir->setText(dir);
  rescan();
  emit settingsChanged();
}

QString ModelsPanel::modelsDir() const { return m_dir->text(); }
QString ModelsPanel::precision() const { return m_precision->currentText(); }
QString ModelsPanel::device() const { return m_device->currentText(); }

void ModelsPanel::rescan() {
  m_problems->clear();
  listVariants();  // the models folder at once; models found elsewhere when the full scan ends
  m_client->scanModelsAsync(m_extraDirs, m_catalogPath, m_dir->text());
  m_foundLabel->setText(tr("On this computer (Hugging Face cache, web-UI folders, added folders): looking ..."));
}

bool ModelsPanel::scanning() const { return m_client->scanning(); }

void ModelsPanel::listVariants() {
  const QString current = m_tree->currentItem() ? m_tree->currentItem()->data(0, Qt::UserRole).toString() : QString();
  m_tree->clear();
  // The catalog's entries and their state in the models folder, from the SDK (a quick scan of that
  // folder alone, so a download that just ended shows at once); an entry the last full scan found
  // whole elsewhere (e.g. in the Hugging Face cache) is installed there.
  QString err;
  const QString json = m_client->scanModels({}, m_catalogPath, m_dir->text(), true, &err);
  if (!err.isEmpty()) m_problems->addItem(tr("Model catalog: %1").arg(err));
  m_statuses = catalogStatuses(QJsonDocument::fromJson(json.toUtf8()).object().value("catalog").toArray());
  const auto elsewhere = catalogStatuses(m_foundDoc.value("catalog").toArray());
  for (auto& s : m_statuses)
    for (const auto& e : elsewhere)
      if (e.variant.id == s.variant.id && e.state == InstallState::Installed && s.state != InstallState::Installed)
        s = e;
  const QString prec = precision() == "auto" ? QStringLiteral("fp16") : precision();
  // Memory to plan with: the first CUDA device's total, else the host's.
  qint64 memory = 0;
  bool gpu = false;
  const auto d = QJsonDocument::fromJson(m_client->diagnosticsJson().toUtf8()).object();
  for (const auto& dv : d.value("devices").toArray()) {
    const auto o = dv.toObject();
    if (o.value("type") == "cuda" && !gpu) {
      memory = qint64(o.value("memory_total").toDouble());
      gpu = true;
    } else if (!gpu) {
      memory = qint64(o.value("memory_total").toDouble()) / 4;  // CPU: stay modest, it is slow
    }
  }
  const QString planPrec = gpu ? prec : QStringLiteral("fp32");
  QStringList recs;
  for (const QString& fam : catalogFamilies(m_statuses)) {
    const QString r = recommendVariant(m_statuses, fam, memory, planPrec);
    if (!r.isEmpty()) recs << r;
  }
  m_recommended = recs.join(", ");
  m_recommend->setText(gpu ? tr("Recommended for this GPU (%1): %2").arg(formatBytes(memory), m_recommended)
                           : tr("No CUDA GPU found: models run on the CPU (slow). Recommended: %1").arg(m_recommended));
  for (const auto& s : m_statuses) {
    auto* item = new QTreeWidgetItem(m_tree);
    const bool rec = recs.contains(s.variant.id);
    item->setText(0, s.variant.name + (rec ? tr("  ★ recommended") : QString()));
    item->setData(0, Qt::UserRole, s.variant.id);
    QString state;
    switch (s.state) {
      case InstallState::Installed: state = tr("installed"); break;
      case InstallState::Missing: state = tr("missing"); break;
      case InstallState::Incomplete: state = tr("incomplete"); break;
    }
    item->setText(1, state);
    item->setText(2, formatBytes(s.variant.sizeBytes));
    item->setText(3, formatBytes(s.variant.vram(planPrec)));
    item->setText(4, s.variant.license);
    QString tip = tr("Folder: %1\nFrom: https://huggingface.co/%2").arg(s.path, s.variant.repo);
    if (s.state == InstallState::Incomplete) tip += tr("\nMissing: %1").arg(s.missingFiles.join(", "));
    if (s.state != InstallState::Installed)
      tip += tr("\nTo install: press Download, or download the repository into %1").arg(s.path);
    for (int c = 0; c < 5; ++c) item->setToolTip(c, tip);
    if (s.state != InstallState::Installed) item->setForeground(1, QBrush(Qt::darkRed));
  }
  // Demo models shipped with Loupe (tiny random weights) are listed too, clearly marked.
  const QDir demo(m_dir->text());
  for (const auto& entry : demo.entryInfoList(QDir::Dirs | QDir::NoDotAndDotDot)) {
    if (!isDemoModelFolder(entry.filePath())) continue;
    auto* item = new QTreeWidgetItem(m_tree);
    item->setText(0, tr("%1 (demo weights: random, for trying the workflow)").arg(entry.fileName()));
    item->setData(0, Qt::UserRole, entry.absoluteFilePath());
    item->setText(1, tr("installed"));
  }
  for (int i = 0; i < m_tree->topLevelItemCount() && !current.isEmpty(); ++i)
    if (m_tree->topLevelItem(i)->data(0, Qt::UserRole).toString() == current) m_tree->setCurrentItem(m_tree->topLevelItem(i));
  updateDownloadButton();
}

void ModelsPanel::checkFolder(const QString& path) {
  m_problems->clear();
  const auto o = QJsonDocument::fromJson(m_client->inspect(path).toUtf8()).object();
  const QString fam = o.value("family").toString();
  m_problems->addItem(fam.isEmpty() ? tr("%1: not a model Loupe recognises").arg(path)
                                    : tr("%1: %2 (%3)").arg(path, fam, o.value("variant").toString()));
  const auto probs = o.value("problems").toArray();
  for (const auto& p : probs) {
    const auto po = p.toObject();
    m_problems->addItem(QStringLiteral("[%1] %2%3").arg(po.value("severity").toString(), po.value("message").toString(),
                                                        po.value("remedy").toString().isEmpty()
                                                            ? QString()
                                                            : QStringLiteral(" → ") + po.value("remedy").toString()));
  }
  if (probs.isEmpty()) m_problems->addItem(tr("No problems found."));
}

void ModelsPanel::openVariant(const QString& id) {
  QString path = id;
  for (const auto& s : m_statuses)
    if (s.variant.id == id) path = s.path;
  m_client->openSession(path);
}

static QString foundModelText(const QJsonObject& m) {
  const QString family = m.value("family").toString(), variant = m.value("variant").toString();
  const QString base = m.value("base").toString();
  QString text = variant.isEmpty() ? family : variant;
  if (!base.isEmpty() && base != variant) text += (text.isEmpty() ? QString() : QStringLiteral(", ")) + base;
  return text;
}

static bool hasErrors(const QJsonObject& m) {
  for (const auto& p : m.value("problems").toArray())
    if (p.toObject().value("severity") == QLatin1String("error")) return true;
  return false;
}

void ModelsPanel::listFound() {
  m_found->clear();
  const auto models = m_foundDoc.value("models").toArray();
  m_foundLabel->setText(tr("On this computer (Hugging Face cache, web-UI folders, added folders): %n found", nullptr,
                           int(models.size())));
  static const QMap<QString, QString> where{{"hf-cache", tr("Hugging Face cache")}, {"a1111", tr("A1111/Forge")},
                                            {"comfyui", tr("ComfyUI")}, {"models_dir", tr("models folder")},
                                            {"folder", tr("added folder")}};
  for (const auto& v : models) {
    const auto m = v.toObject();
    const QString path = m.value("path").toString();
    const QString kind = m.value("kind").toString();
    const QString catalogId = m.value("catalog_id").toString();
    const bool errors = hasErrors(m);
    QStringList lines{path};
    for (const auto& p : m.value("problems").toArray()) {
      const auto po = p.toObject();
      lines << QStringLiteral("[%1] %2").arg(po.value("severity").toString(), po.value("message").toString());
    }
    const bool openable = kind == QLatin1String("model") && m.value("supported").toBool() && !errors;
    auto* item = new QTreeWidgetItem(m_found);
    item->setText(0, m.value("name").toString() + (catalogId.isEmpty() ? QString() : tr("  (catalog: %1)").arg(catalogId)));
    item->setText(1, kind);
    item->setText(2, foundModelText(m));
    item->setText(3, m.value("precision").toString());
    item->setText(4, formatBytes(qint64(m.value("bytes").toDouble())));
    item->setText(5, where.value(m.value("source").toString(), m.value("source").toString()));
    item->setData(0, Qt::UserRole, path);
    item->setData(0, Qt::UserRole + 1, openable);
    if (openable) lines << tr("Double-click to open it.");
    for (int c = 0; c < 6; ++c) item->setToolTip(c, lines.join('\n'));
    if (errors) item->setForeground(0, QBrush(Qt::darkRed));
    else if (!m.value("supported").toBool()) item->setForeground(0, QBrush(Qt::gray));
  }
}

void ModelsPanel::addExtraDir(const QString& dir) {
  if (dir.isEmpty() || m_extraDirs.contains(dir)) return;
  m_extraDirs << dir;
  QSettings().setValue("loupe/scanDirs", m_extraDirs);
  rescan();
}

void ModelsPanel::updateDownloadButton() {
  bool missing = false;
  if (auto* item = m_tree->currentItem())
    for (const auto& s : m_statuses)
      if (s.variant.id == item->data(0, Qt::UserRole).toString()) missing = s.state != InstallState::Installed;
  m_download->setEnabled(missing && !m_client->downloading());
  m_cancelDownload->setEnabled(m_client->downloading());
}

void ModelsPanel::downloadVariant(const QString& id) {
  QString err;
  if (!m_client->download(id, m_catalogPath, &err)) {
    m_downloadState->setText(tr("Download: %1").arg(err));
    return;
  }
  QString name = id;
  for (const auto& s : m_statuses)
    if (s.variant.id == id) name = s.variant.name;
  m_downloadProgress->setRange(0, 0);
  m_downloadProgress->show();
  m_download->setEnabled(false);
  m_cancelDownload->setEnabled(true);
  m_downloadState->setText(tr("Downloading %1 into the models folder ...").arg(name));
}

}  // namespace loupe::qt
