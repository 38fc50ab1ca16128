#include "tasks_panel.h"

#include <QCheckBox>

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>

#include "loupe_host/plugin.h"

namespace loupe::qt {

namespace {
struct TaskDef {
  const char* id;
  const char* label;
  bool text;        // needs a phrase / prompt
  bool generative;  // diffusion parameters
  bool region;      // uses the selected overlay as its region
};
const TaskDef kTasks[] = {
    {"caption", "Caption", false, false, false},
    {"detailed_caption", "Detailed caption", false, false, false},
    {"more_detailed_caption", "More detailed caption", false, false, false},
    {"detect", "Detect objects", false, false, false},
    {"dense_caption", "Dense region captions", false, false, false},
    {"region_proposal", "Propose regions", false, false, false},
    {"ground", "Find a phrase (grounding)", true, false, false},
    {"segment", "Segment by description", true, false, false},
    {"open_vocabulary_detect", "Open-vocabulary detection", true, false, false},
    {"region_caption", "Describe selected region", false, false, true},
    {"region_segment", "Segment selected region", false, false, true},
    {"ocr", "Read text (OCR)", false, false, false},
    {"ocr_regions", "Read text with regions", false, false, false},
    {"txt2img", "Generate (txt2img)", true, true, false},
    {"img2img", "Vary image (img2img)", true, true, false},
    {"inpaint", "Inpaint the mask", true, true, false},
};
const TaskDef* findTask(const QString& id) {
  for (const auto& t : kTasks)
    if (id == QLatin1String(t.id)) return &t;
  return nullptr;
}
}  // namespace

TasksPanel::TasksPanel(LoupeClient* client, loupe::HostContext* host, QWidget* parent)
    : QWidget(parent), m_client(client), m_host(host) {
  setObjectName("LoupeTasksPanel");
  auto* lay = new QVBoxLayout(this);
  m_demo = new QLabel(this);
  m_demo->setObjectName("demoNotice");
  m_demo->setWordWrap(true);
  m_demo->setStyleSheet("QLabel { background: #fff3c4; color: #5a4500; border: 1px solid #e0c060; padding: 4px; }");
  m_demo->setVisible(false);
  lay->addWidget(m_demo);
  auto updateDemo = [this] {
    m_demo->setVisible(m_client->sessionIsDemo());
    if (m_client->sessionIsDemo())
      m_demo->setText(tr("<b>Demo weights</b> (%1): a tiny random model that shows the workflow; its answers "
                         "and pictures are meaningless. For real results install a model: see the Models tab "
                         "and the README's \"Models\" section.")
                          .arg(QFileInfo(m_client->sessionPath()).fileName()));
  };
  connect(m_client, &LoupeClient::sessionOpened, this, updateDemo);
  connect(m_client, &LoupeClient::sessionOpening, this, updateDemo);
  connect(m_client, &LoupeClient::sessionOpened, this, [this] { refreshAdapters(); });
  auto* form = m_form = new QFormLayout;
  m_task = new QComboBox(this);
  m_task->setObjectName("task");
  for (const auto& t : kTasks) m_task->addItem(tr(t.label), QString::fromLatin1(t.id));
  form->addRow(tr("Task"), m_task);
  m_text = new QLineEdit(this);
  m_text->setObjectName("text");
  m_text->setPlaceholderText(tr("a phrase, or a prompt"));
  form->addRow(tr("Text"), m_text);
  m_negative = new QLineEdit(this);
  m_negative->setPlaceholderText(tr("what to avoid"));
  form->addRow(tr("Negative"), m_negative);
  m_sampler = new QComboBox(this);
  m_sampler->addItems({"euler_a", "euler", "ddim", "dpmpp_2m", "dpmpp_2m_karras"});
  form->addRow(tr("Sampler"), m_sampler);
  // Stable Diffusion: an external VAE and a LoRA, from the models folder (A1111 / ComfyUI names) or
  // any file; applied to the session when a job starts.
  auto chooser = [this](QComboBox** box, const char* name, const QString& none, const QString& title) {
    auto* row = new QWidget(this);
    auto* h = new QHBoxLayout(row);
    h->setContentsMargins(0, 0, 0, 0);
    *box = new QComboBox(row);
    (*box)->setObjectName(QString::fromLatin1(name));
    (*box)->addItem(none, QString());
    (*box)->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    (*box)->setMinimumContentsLength(12);
    h->addWidget(*box, 1);
    auto* browse = new QToolButton(row);
    browse->setObjectName(QString::fromLatin1(name) + QStringLiteral("Browse"));
    browse->setText(QStringLiteral("…"));
    browse->setToolTip(title);
    QComboBox* b = *box;
    connect(browse, &QToolButton::clicked, this, [this, b, title] { browseAdapter(b, title); });
    h->addWidget(browse);
    return row;
  };
  m_vaeRow = chooser(&m_vae, "vae", tr("the model's own"), tr("Choose a VAE file (.safetensors) or a diffusers vae folder"));
  m_vae->setToolTip(tr("An external VAE (models/VAE): decodes the latents into the picture."));
  form->addRow(tr("VAE"), m_vaeRow);
  m_loraRow = chooser(&m_lora, "lora", tr("none"), tr("Choose a LoRA file"));
  m_loraWeight = new QDoubleSpinBox(m_loraRow);
  m_loraWeight->setObjectName("loraWeight");
  m_loraWeight->setRange(-2.0, 2.0);
  m_loraWeight->setSingleStep(0.1);
  m_loraWeight->setValue(1.0);
  m_loraWeight->setToolTip(tr("LoRA weight"));
  m_loraRow->layout()->addWidget(m_loraWeight);
  form->addRow(tr("LoRA"), m_loraRow);
  m_steps = new QSpinBox(this);
  m_steps->setObjectName("steps");
  m_steps->setRange(1, 150);
  m_steps->setValue(25);
  form->addRow(tr("Steps"), m_steps);
  m_guidance = new QDoubleSpinBox(this);
  m_guidance->setRange(1.0, 30.0);
  m_guidance->setValue(7.5);
  form->addRow(tr("Guidance"), m_guidance);
  m_strength = new QDoubleSpinBox(this);
  m_strength->setRange(0.0, 1.0);
  m_strength->setSingleStep(0.05);
  m_strength->setValue(0.75);
  form->addRow(tr("Strength"), m_strength);
  m_seed = new QSpinBox(this);
  m_seed->setRange(0, 2147483647);
  m_seed->setValue(42);
  form->addRow(tr("Seed"), m_seed);
  m_width = new QSpinBox(this);
  m_width->setRange(64, 2048);
  m_width->setSingleStep(8);
  m_width->setValue(512);
  form->addRow(tr("Width"), m_width);
  m_height = new QSpinBox(this);
  m_height->setRange(64, 2048);
  m_height->setSingleStep(8);
  m_height->setValue(512);
  form->addRow(tr("Height"), m_height);
  // inpainting: how the result meets the rest of the image
  m_onlyMasked = new QCheckBox(tr("Only the masked area (at full resolution)"), this);
  m_onlyMasked->setObjectName("onlyMasked");
  m_onlyMasked->setChecked(true);  // the masked area at the model's own resolution: sharper and faster
  m_onlyMasked->setToolTip(tr("Repaint a crop around the mask at the model's resolution and paste it back; "
                              "off: repaint at the size of the whole image."));
  form->addRow(QString(), m_onlyMasked);
  m_maskBlur = new QSpinBox(this);
  m_maskBlur->setRange(0, 64);
  m_maskBlur->setValue(4);
  m_maskBlur->setSuffix(tr(" px"));
  form->addRow(tr("Mask blur"), m_maskBlur);
  m_feather = new QSpinBox(this);
  m_feather->setObjectName("feather");
  m_feather->setRange(0, 256);
  m_feather->setValue(8);
  m_feather->setSuffix(tr(" px"));
  m_feather->setToolTip(tr("The result fades in over this width inside the mask; outside the mask nothing changes."));
  form->addRow(tr("Feather"), m_feather);
  m_colorFix = new QCheckBox(tr("Match colours to the surroundings"), this);
  m_colorFix->setObjectName("colorCorrection");
  form->addRow(QString(), m_colorFix);
  lay->addLayout(form);
  m_textRows = {m_text};
  m_genRows = {m_negative, m_sampler, m_vaeRow, m_loraRow, m_steps, m_guidance, m_seed};
  m_sizeRows = {m_width, m_height};
  m_strengthRows = {m_strength};
  m_inpaintRows = {m_onlyMasked, m_maskBlur, m_feather, m_colorFix};

  auto* row = new QHBoxLayout;
  m_run = new QPushButton(tr("Run"), this);
  m_run->setObjectName("run");
  m_cancel = new QPushButton(tr("Cancel"), this);
  m_cancel->setObjectName("cancel");
  m_cancel->setEnabled(false);
  row->addWidget(m_run);
  row->addWidget(m_cancel);
  lay->addLayout(row);
  m_progress = new QProgressBar(this);
  lay->addWidget(m_progress);
  m_preview = new QLabel(this);
  m_preview->setObjectName("preview");
  m_preview->setAlignment(Qt::AlignCenter);
  m_preview->setMinimumHeight(0);
  lay->addWidget(m_preview);
  m_status = new QLabel(this);
  m_status->setObjectName("taskStatus");
  m_status->setWordWrap(true);
  lay->addWidget(m_status);
  m_output = new QPlainTextEdit(this);
  m_output->setReadOnly(true);
  m_output->setPlaceholderText(tr("Results appear here and on the canvas."));
  lay->addWidget(m_output, 1);
  auto* copy = new QPushButton(tr("Copy result"), this);
  lay->addWidget(copy);

  connect(m_task, QOverload<int>::of(&QComboBox::currentIndexChanged), this, [this] { updateFields(); });
  connect(m_run, &QPushButton::clicked, this, &TasksPanel::run);
  connect(m_cancel, &QPushButton::clicked, m_client, &LoupeClient::cancel);
  connect(m_host, &loupe::HostContext::cancelRequested, m_client, &LoupeClient::cancel);
  connect(copy, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(m_output->toPlainText()); });
  connect(m_client, &LoupeClient::progress, this, [this](int step, int total, const QString& stage, const QImage& preview) {
    if (m_runningTask.isEmpty()) return;
    m_progress->setRange(0, qMax(total, 1));
    m_progress->setValue(step);
    m_status->setText(tr("%1: %2 / %3").arg(stage).arg(step).arg(total));
    m_host->showProgress(step, total);
    if (!preview.isNull()) m_preview->setPixmap(QPixmap::fromImage(preview).scaled(160, 160, Qt::KeepAspectRatio));
  });
  connect(m_client, &LoupeClient::finished, this, &TasksPanel::onFinished);
  connect(m_client, &LoupeClient::failed, this, [this](const QString& err, bool cancelled) {
    if (m_runningTask.isEmpty()) return;
    m_runningTask.clear();
    m_run->setEnabled(true);
    m_cancel->setEnabled(false);
    m_host->hideProgress();
    m_status->setText(cancelled ? tr("Cancelled.") : tr("Failed: %1").arg(err));
    m_host->showStatus(cancelled ? tr("Cancelled") : tr("Loupe: %1").arg(err), 5000);
  });
  updateFields();
}

void TasksPanel::setTask(const QString& task) {
  const int i = m_task->findData(task);
  if (i >= 0) m_task->setCurrentIndex(i);
}

void TasksPanel::setText(const QString& text) { m_text->setText(text); }

void TasksPanel::updateFields() {
  const TaskDef* t = findTask(m_task->currentData().toString());
  if (!t) return;
  auto show = [this](const QList<QWidget*>& ws, bool on) {
    for (auto* w : ws) m_form->setRowVisible(w, on);
  };
  show(m_textRows, t->text);
  show(m_genRows, t->generative);
  if (t->generative) refreshAdapters();
  show(m_sizeRows, QLatin1String(t->id) == QLatin1String("txt2img"));
  show(m_strengthRows, QLatin1String(t->id) == QLatin1String("img2img") || QLatin1String(t->id) == QLatin1String("inpaint"));
  show(m_inpaintRows, QLatin1String(t->id) == QLatin1String("inpaint"));
  // inpainting models are trained to start from pure noise in the mask
  if (QLatin1String(t->id) == QLatin1String("inpaint") && m_strength->value() == 0.75) m_strength->setValue(1.0);
}

void TasksPanel::refreshAdapters() {
  const QDir models(m_client->modelsDir());
  auto fill = [&](QComboBox* box, const QStringList& subdirs, bool folders) {
    const QString current = box->currentData().toString();
    QStringList found;
    for (const QString& sub : subdirs) {
      const QDir d(models.filePath(sub));
      if (m_client->modelsDir().isEmpty() || !d.exists()) continue;
      for (const QFileInfo& f : d.entryInfoList(QDir::Files | QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
        const QString ext = f.suffix().toLower();
        const bool file = f.isFile() && (ext == "safetensors" || ext == "ckpt" || ext == "pt" || ext == "bin");
        const bool folder = folders && f.isDir() && QFileInfo::exists(f.filePath() + "/config.json");  // diffusers vae/
        if ((file || folder) && !found.contains(f.absoluteFilePath())) found << f.absoluteFilePath();
      }
    }
    while (box->count() > 1) box->removeItem(1);
    for (const QString& f : found) box->addItem(QFileInfo(f).fileName(), f);
    if (!current.isEmpty() && box->findData(current) < 0) box->addItem(QFileInfo(current).fileName(), current);
    box->setCurrentIndex(qMax(0, box->findData(current)));
  };
  fill(m_vae, {"VAE", "vae"}, true);
  fill(m_lora, {"Lora", "LoRA", "lora", "loras"}, false);
}

void TasksPanel::browseAdapter(QComboBox* box, const QString& title) {
  const QString start = m_client->modelsDir().isEmpty() ? QDir::homePath() : m_client->modelsDir();
  const QString file = QFileDialog::getOpenFileName(this, title, start, tr("Checkpoints (*.safetensors *.ckpt *.pt *.bin)"));
  if (file.isEmpty()) return;
  if (box->findData(file) < 0) box->addItem(QFileInfo(file).fileName(), file);
  box->setCurrentIndex(box->findData(file));
}

bool TasksPanel::buildInput(TaskInput* in, QString* error) const {
  const QString task = m_task->currentData().toString();
  const TaskDef* t = findTask(task);
  if (!t) {
    *error = tr("Choose a task.");
    return false;
  }
  in->task = task;
  if (task != QLatin1String("txt2img")) {
    if (!m_host->hasDocument()) {
      *error = tr("Open an image first.");
      return false;
    }
    in->image = m_host->image();
  }
  if (t->text) {
    // an empty prompt is valid for generation (unconditional), not for a search
    if (!t->generative && m_text->text().trimmed().isEmpty()) {
      *error = tr("Write the phrase to look for.");
      return false;
    }
    in->strings[t->generative ? "prompt" : "text"] = m_text->text();
  }
  if (t->generative) {
    in->applyAdapters = true;
    in->vae = m_vae->currentData().toString();
    in->lora = m_lora->currentData().toString();
    in->loraWeight = m_loraWeight->value();
    if (!m_negative->text().isEmpty()) in->strings["negative_prompt"] = m_negative->text();
    in->strings["sampler"] = m_sampler->currentText();
    in->ints["steps"] = m_steps->value();
    in->ints["seed"] = m_seed->value();
    in->floats["guidance_scale"] = m_guidance->value();
    if (task == "txt2img") {
      in->ints["width"] = m_width->value();
      in->ints["height"] = m_height->value();
    } else {
      in->floats["strength"] = m_strength->value();
    }
  }
  if (task == "inpaint") {
    const QImage mask = m_host->mask();
    bool any = false;
    for (int y = 0; y < mask.height() && !any; ++y) {
      const uchar* row = mask.constScanLine(y);
      for (int x = 0; x < mask.width() && !any; ++x) any = row[x] != 0;
    }
    if (!any) {
      *error = tr("Paint a mask first (B), or use a detection as the mask.");
      return false;
    }
    in->mask = mask;
    in->ints["only_masked"] = m_onlyMasked->isChecked() ? 1 : 0;
    in->floats["mask_blur"] = m_maskBlur->value();
    in->floats["feather"] = m_feather->value();
    in->ints["color_correction"] = m_colorFix->isChecked() ? 1 : 0;
  }
  if (t->region) {
    const int sel = m_host->selectedOverlay();
    if (sel < 0) {
      *error = tr("Select a box on the canvas first.");
      return false;
    }
    in->hasRegion = true;
    in->region = m_host->overlays().at(sel).points.boundingRect();
  }
  return true;
}

void TasksPanel::run() {
  TaskInput in;
  QString err;
  if (!buildInput(&in, &err) || !m_client->run(in, &err)) {
    m_status->setText(err);
    return;
  }
  m_runningTask = in.task;
  m_run->setEnabled(false);
  m_cancel->setEnabled(true);
  m_progress->setValue(0);
  m_preview->clear();
  m_status->setText(tr("Running %1 ...").arg(m_task->currentText()));
}

void TasksPanel::onFinished(const JobOutput& out) {
  if (m_runningTask.isEmpty() || out.task != m_runningTask) return;
  m_runningTask.clear();
  m_run->setEnabled(true);
  m_cancel->setEnabled(false);
  m_host->hideProgress();
  if (!out.overlays.isEmpty()) {
    m_host->clearOverlays();
    m_host->addOverlays(out.overlays);
  }
  for (int i = 0; i < out.images.size(); ++i)
    m_host->addImageVersion(out.images[i], tr("%1: %2").arg(out.task, m_text->text().left(40)));
  QString text = out.text;
  for (const auto& o : out.overlays) {
    const QRectF r = o.points.boundingRect();
    text += QStringLiteral("\n%1  [%2, %3, %4, %5]").arg(o.label.isEmpty() ? QStringLiteral("(region)") : o.label)
                .arg(r.left(), 0, 'f', 0).arg(r.top(), 0, 'f', 0).arg(r.right(), 0, 'f', 0).arg(r.bottom(), 0, 'f', 0);
  }
  m_output->setPlainText(text.trimmed());
  m_status->setText(tr("Done: %1 region(s), %2 image(s).").arg(out.overlays.size()).arg(out.images.size()));
  m_host->showStatus(tr("Loupe: %1 done").arg(out.task), 4000);
}

}  // namespace loupe::qt
