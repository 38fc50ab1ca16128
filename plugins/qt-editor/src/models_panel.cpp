#include "models_panel.h"

#include <QComboBox>
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
#include <QTreeWidget>
#include <QVBoxLayout>

#include "loupe_client.h"

namespace loupe::qt {

ModelsPanel::ModelsPanel(LoupeClient* client, const QString& catalogPath, QWidget* parent)
    : QWidget(parent), m_client(client) {
  setObjectName("LoupeModelsPanel");
  if (!m_catalog.load(catalogPath, &m_catalogError)) m_catalogError = tr("Model catalog: %1").arg(m_catalogError);
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
  lay->addLayout(row);
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
    rescan();
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
  m_tree->clear();
  m_problems->clear();
  if (!m_catalogError.isEmpty()) m_problems->addItem(m_catalogError);
  m_statuses = m_catalog.scan(m_dir->text());
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
  for (const QString fam : {"florence2", "stable-diffusion"}) {
    const QString r = m_catalog.recommend(fam, memory, planPrec);
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
      tip += tr("\nTo install: download the repository into %1").arg(s.path);
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

}  // namespace loupe::qt
