#include "tasks_panel.h"

#include <QApplication>
#include <QCheckBox>
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
#include <QSignalBlocker>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QToolButton>
#include <QVBoxLayout>
#include <algorithm>
#include <cmath>
#include <limits>

#include "loupe_host/plugin.h"

namespace loupe::qt {

namespace {
// "describe" -> "Describe": a group or label from the description as a heading.
QString title(const QString& s) { return s.isEmpty() ? s : s.left(1).toUpper() + s.mid(1); }

int toInt(double v) { return int(qBound(double(std::numeric_limits<int>::min()), v, double(std::numeric_limits<int>::max()))); }

// Decimals a float parameter needs to show its step, default and minimum exactly (2 when any step goes).
int decimalsFor(const ParamDesc& p) {
  for (int d = 0; d <= 6; ++d) {
    const double f = std::pow(10.0, d);
    auto whole = [f](double x) { return std::abs(x * f - std::round(x * f)) < 1e-6 * std::max(1.0, std::abs(x * f)); };
    if ((p.step <= 0 || whole(p.step)) && whole(p.defaultNumber) && whole(p.min)) return p.step > 0 ? d : std::max(d, 2);
  }
  return 6;
}

// A mask with at least one selected pixel.
bool anyPixel(const QImage& mask) {
  for (int y = 0; y < mask.height(); ++y) {
    const uchar* row = mask.constScanLine(y);
    for (int x = 0; x < mask.width(); ++x)
      if (row[x] != 0) return true;
  }
  return false;
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
  // The task list is the open session's: it changes with the session.
  connect(m_client, &LoupeClient::sessionOpened, this, [this] { refreshTasks(); });
  connect(m_client, &LoupeClient::sessionClosed, this, [this] { refreshTasks(); });
  auto* form = m_form = new QFormLayout;
  m_task = new QComboBox(this);
  m_task->setObjectName("task");
  m_task->setPlaceholderText(tr("open a model first"));
  form->addRow(tr("Task"), m_task);
  m_taskHelp = new QLabel(this);
  m_taskHelp->setObjectName("taskHelp");
  m_taskHelp->setWordWrap(true);
  form->addRow(QString(), m_taskHelp);
  m_textLabel = new QLabel(tr("Text"), this);
  m_text = new QLineEdit(this);
  m_text->setObjectName("text");
  form->addRow(m_textLabel, m_text);
  // Stable Diffusion: an external VAE and a LoRA, from the models folder (A1111 / ComfyUI names) or
  // any file; session settings, not task parameters, applied to the session when a job starts.
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
  lay->addLayout(form);
  // The chosen task's parameters (buildForm).
  m_paramsHost = new QWidget(this);
  m_paramsHost->setObjectName("params");
  auto* paramsLay = new QVBoxLayout(m_paramsHost);
  paramsLay->setContentsMargins(0, 0, 0, 0);
  lay->addWidget(m_paramsHost);

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
  m_output->setObjectName("output");
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
    if (m_running.name.isEmpty()) return;
    m_progress->setRange(0, qMax(total, 1));
    m_progress->setValue(step);
    m_status->setText(tr("%1: %2 / %3").arg(stage).arg(step).arg(total));
    m_host->showProgress(step, total);
    if (!preview.isNull()) m_preview->setPixmap(QPixmap::fromImage(preview).scaled(160, 160, Qt::KeepAspectRatio));
  });
  connect(m_client, &LoupeClient::finished, this, &TasksPanel::onFinished);
  connect(m_client, &LoupeClient::failed, this, [this](const QString& err, bool cancelled) {
    if (m_running.name.isEmpty()) return;
    m_running = TaskDesc();
    m_run->setEnabled(true);
    m_cancel->setEnabled(false);
    m_host->hideProgress();
    m_status->setText(cancelled ? tr("Cancelled.") : tr("Failed: %1").arg(err));
    m_host->showStatus(cancelled ? tr("Cancelled") : tr("Loupe: %1").arg(err), 5000);
  });
  refreshTasks();
}

void TasksPanel::setTask(const QString& task) {
  const int i = m_task->findData(task);
  if (i >= 0) m_task->setCurrentIndex(i);
}

void TasksPanel::setText(const QString& text) { m_text->setText(text); }

const TaskDesc* TasksPanel::currentTask() const {
  const QString name = m_task->currentData().toString();
  return name.isEmpty() ? nullptr : m_client->sessionTask(name);
}

bool TasksPanel::sessionMakesImages() const {
  for (const auto& t : m_client->sessionTasks())
    if (t.outputs & LOUPE_OUTPUT_IMAGES) return true;
  return false;
}

void TasksPanel::refreshTasks() {
  const QString keep = m_task->currentData().toString();
  {
    const QSignalBlocker block(m_task);
    m_task->clear();
    auto* model = qobject_cast<QStandardItemModel*>(m_task->model());
    // One heading per group, in the order the description first names it, then its tasks.
    QStringList groups;
    for (const auto& t : m_client->sessionTasks())
      if (!t.runtime && !groups.contains(t.group)) groups << t.group;
    for (const QString& g : groups) {
      auto* heading = new QStandardItem(g.isEmpty() ? tr("Other") : title(g));
      heading->setFlags(Qt::NoItemFlags);  // not selectable
      QFont bold = heading->font();
      bold.setBold(true);
      heading->setFont(bold);
      model->appendRow(heading);
      for (const auto& t : m_client->sessionTasks()) {
        if (t.runtime || t.group != g) continue;
        m_task->addItem(QStringLiteral("  ") + t.label, t.name);
        m_task->setItemData(m_task->count() - 1, t.help, Qt::ToolTipRole);
      }
    }
    int i = keep.isEmpty() ? -1 : m_task->findData(keep);
    for (int k = 0; i < 0 && k < m_task->count(); ++k)
      if (!m_task->itemData(k).toString().isEmpty()) i = k;
    m_task->setCurrentIndex(i);
    m_task->setEnabled(i >= 0);
  }
  updateFields();
}

void TasksPanel::updateFields() {
  const TaskDesc* t = currentTask();
  m_taskHelp->setText(t ? t->help : QString());
  m_form->setRowVisible(m_taskHelp, t && !t->help.isEmpty());
  // The text input, when the task takes one (required or not: an empty prompt is a valid prompt).
  const bool text = t && !t->textKey.isEmpty();
  m_form->setRowVisible(m_text, text);
  if (text) {
    m_textLabel->setText(title(t->textLabel.isEmpty() ? t->textKey : t->textLabel));
    m_text->setPlaceholderText(t->textHelp);
    m_text->setToolTip(t->textHelp);
    m_textLabel->setToolTip(t->textHelp);
  }
  // VAE and LoRA belong to sessions that make images.
  const bool adapters = sessionMakesImages();
  m_form->setRowVisible(m_vaeRow, adapters);
  m_form->setRowVisible(m_loraRow, adapters);
  if (adapters) refreshAdapters();
  delete m_params;  // at once: the new form's widgets take the same object names
  m_params = nullptr;
  m_paramWidgets.clear();
  if (t) buildForm(*t);
}

void TasksPanel::buildForm(const TaskDesc& task) {
  m_params = new QWidget(m_paramsHost);
  m_params->setObjectName("paramForm");
  auto* v = new QVBoxLayout(m_params);
  v->setContentsMargins(0, 0, 0, 0);
  auto* basic = new QFormLayout;
  v->addLayout(basic);
  auto* toggle = new QToolButton(m_params);
  toggle->setObjectName("advancedToggle");
  toggle->setText(tr("Advanced"));
  toggle->setCheckable(true);
  toggle->setAutoRaise(true);
  toggle->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  auto* advanced = new QWidget(m_params);
  advanced->setObjectName("advanced");
  auto* folded = new QFormLayout(advanced);
  folded->setContentsMargins(0, 0, 0, 0);
  v->addWidget(toggle);
  v->addWidget(advanced);
  bool anyAdvanced = false;
  for (const ParamDesc& p : task.params) {
    QFormLayout* f = p.advanced ? folded : basic;
    // An integer's suggested values (the description's choices) as presets: "WIDTHxHEIGHT" sizes
    // set width and height (SDXL's trained sizes), plain numbers the value itself.
    if (p.type == LOUPE_PARAM_INT && !p.choices.isEmpty()) {
      const bool sizes = p.choices.first().contains(QLatin1Char('x'));
      auto* presets = new QComboBox(p.advanced ? advanced : m_params);
      presets->setObjectName(p.name + QStringLiteral("Presets"));
      presets->addItem(tr("Choose…"));
      presets->addItems(p.choices);
      presets->setToolTip(sizes ? tr("sizes this model was trained at") : p.help);
      f->addRow(sizes ? tr("Size presets") : tr("%1 presets").arg(p.label), presets);
      const QString name = p.name;
      connect(presets, QOverload<int>::of(&QComboBox::activated), this, [this, presets, name](int i) {
        if (i <= 0) return;
        const QStringList parts = presets->itemText(i).split(QLatin1Char('x'));
        auto set = [this](const QString& key, const QString& value) {
          if (auto* s = qobject_cast<QSpinBox*>(m_paramWidgets.value(key))) s->setValue(value.toInt());
        };
        if (parts.size() == 2) {
          set(QStringLiteral("width"), parts[0]);
          set(QStringLiteral("height"), parts[1]);
        } else {
          set(name, parts[0]);
        }
        presets->setCurrentIndex(0);
      });
    }
    QWidget* w = paramWidget(task.name, p, p.advanced ? advanced : m_params);
    f->addRow(p.type == LOUPE_PARAM_BOOL ? QString() : p.label, w);  // a check box carries its label
    if (QWidget* label = f->labelForField(w)) label->setToolTip(p.help);
    m_paramWidgets.insert(p.name, w);
    anyAdvanced = anyAdvanced || p.advanced;
  }
  toggle->setChecked(m_advancedOpen);
  toggle->setArrowType(m_advancedOpen ? Qt::DownArrow : Qt::RightArrow);
  toggle->setVisible(anyAdvanced);
  advanced->setVisible(anyAdvanced && m_advancedOpen);
  connect(toggle, &QToolButton::toggled, this, [this, toggle, advanced](bool open) {
    m_advancedOpen = open;
    toggle->setArrowType(open ? Qt::DownArrow : Qt::RightArrow);
    advanced->setVisible(open);
  });
  m_paramsHost->layout()->addWidget(m_params);
  m_params->show();  // now, not when the layout gets to it: a child made after its parent was shown starts hidden
}

QWidget* TasksPanel::paramWidget(const QString& task, const ParamDesc& p, QWidget* parent) {
  const QVariant saved = m_changed.value(task).value(p.name);
  const QString name = p.name;
  auto keep = [this, task, name](const QVariant& value) { m_changed[task][name] = value; };
  const QString suffix = p.unit.isEmpty() ? QString() : QStringLiteral(" ") + p.unit;
  QWidget* w = nullptr;
  switch (p.type) {
    case LOUPE_PARAM_INT: {
      auto* s = new QSpinBox(parent);
      s->setRange(toInt(p.min), toInt(p.max));  // a spin box holds an int: wider ranges are cut to it
      s->setSingleStep(qMax(1, toInt(p.step)));
      s->setSuffix(suffix);
      s->setValue(saved.isValid() ? saved.toInt() : toInt(p.defaultNumber));
      connect(s, &QSpinBox::valueChanged, this, [keep](int v) { keep(v); });
      w = s;
      break;
    }
    case LOUPE_PARAM_FLOAT: {
      auto* s = new QDoubleSpinBox(parent);
      s->setDecimals(decimalsFor(p));
      s->setRange(p.min, p.max);
      s->setSingleStep(p.step > 0 ? p.step : 0.1);
      s->setSuffix(suffix);
      s->setValue(saved.isValid() ? saved.toDouble() : p.defaultNumber);
      connect(s, &QDoubleSpinBox::valueChanged, this, [keep](double v) { keep(v); });
      w = s;
      break;
    }
    case LOUPE_PARAM_BOOL: {
      auto* c = new QCheckBox(p.label, parent);
      c->setChecked(saved.isValid() ? saved.toBool() : p.defaultNumber != 0);
      connect(c, &QCheckBox::toggled, this, [keep](bool v) { keep(v); });
      w = c;
      break;
    }
    case LOUPE_PARAM_CHOICE: {
      auto* c = new QComboBox(parent);
      c->addItems(p.choices);
      const int i = c->findText(saved.isValid() ? saved.toString() : p.defaultString);
      c->setCurrentIndex(qMax(0, i));
      connect(c, &QComboBox::currentTextChanged, this, [keep](const QString& v) { keep(v); });
      w = c;
      break;
    }
    case LOUPE_PARAM_STRING:
    default: {  // a type this editor does not know yet: a string is the SDK's most general value
      auto* e = new QLineEdit(parent);
      e->setText(saved.isValid() ? saved.toString() : p.defaultString);
      e->setPlaceholderText(p.help);
      connect(e, &QLineEdit::textChanged, this, [keep](const QString& v) { keep(v); });
      w = e;
      break;
    }
  }
  w->setObjectName(p.name);
  w->setProperty("loupeParam", p.name);
  w->setToolTip(p.help);
  return w;
}

void TasksPanel::readParam(const ParamDesc& p, TaskInput* in) const {
  QWidget* w = m_paramWidgets.value(p.name);
  if (auto* s = qobject_cast<QSpinBox*>(w)) in->ints[p.name] = s->value();
  else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) in->floats[p.name] = d->value();
  else if (auto* c = qobject_cast<QCheckBox*>(w)) in->ints[p.name] = c->isChecked() ? 1 : 0;
  else if (auto* b = qobject_cast<QComboBox*>(w)) in->strings[p.name] = b->currentText();
  else if (auto* e = qobject_cast<QLineEdit*>(w)) in->strings[p.name] = e->text();
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
  if (!m_client->hasSession()) {
    *error = tr("Open a model first (Models panel).");
    return false;
  }
  const TaskDesc* t = currentTask();
  if (!t) {
    *error = tr("Choose a task.");
    return false;
  }
  in->task = t->name;
  // The inputs the task takes, from the document; a required one that is missing is explained.
  if (t->inputs & LOUPE_INPUT_IMAGE) {
    if (m_host->hasDocument()) in->image = m_host->image();
    else if (t->required & LOUPE_INPUT_IMAGE) {
      *error = tr("Open an image first.");
      return false;
    }
  }
  if (!t->textKey.isEmpty()) {
    if ((t->required & (LOUPE_INPUT_TEXT | LOUPE_INPUT_QUESTION)) && m_text->text().trimmed().isEmpty()) {
      *error = t->textHelp.isEmpty() ? tr("Write the %1 first.").arg(t->textLabel)
                                     : tr("Write the %1 first: %2.").arg(t->textLabel, t->textHelp);
      return false;
    }
    in->strings[t->textKey] = m_text->text();
  }
  if (t->inputs & LOUPE_INPUT_MASK) {
    const QImage mask = m_host->hasDocument() ? m_host->mask() : QImage();
    if (anyPixel(mask)) in->mask = mask;
    else if (t->required & LOUPE_INPUT_MASK) {
      *error = tr("Paint a mask first (B), or use a detection as the mask.");
      return false;
    }
  }
  if (t->inputs & LOUPE_INPUT_REGION) {
    const int sel = m_host->hasDocument() ? m_host->selectedOverlay() : -1;
    const QList<loupe::Overlay> overlays = m_host->overlays();
    if (sel >= 0 && sel < overlays.size()) {
      in->hasRegion = true;
      in->region = overlays.at(sel).points.boundingRect();
    } else if (t->required & LOUPE_INPUT_REGION) {
      *error = tr("Select a box on the canvas first.");
      return false;
    }
  }
  for (const ParamDesc& p : t->params) readParam(p, in);
  // The session's VAE and LoRA matter to the tasks that make images.
  if (t->outputs & LOUPE_OUTPUT_IMAGES) {
    in->applyAdapters = true;
    in->vae = m_vae->currentData().toString();
    in->lora = m_lora->currentData().toString();
    in->loraWeight = m_loraWeight->value();
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
  m_running = *currentTask();
  m_run->setEnabled(false);
  m_cancel->setEnabled(true);
  m_progress->setValue(0);
  m_preview->clear();
  m_status->setText(tr("Running %1 ...").arg(m_running.label));
}

void TasksPanel::onFinished(const JobOutput& out) {
  if (m_running.name.isEmpty() || out.task != m_running.name) return;
  const TaskDesc t = m_running;
  m_running = TaskDesc();
  m_run->setEnabled(true);
  m_cancel->setEnabled(false);
  m_host->hideProgress();
  // What the task outputs, as its description says.
  if ((t.outputs & (LOUPE_OUTPUT_BOXES | LOUPE_OUTPUT_POLYGONS)) && !out.overlays.isEmpty()) {
    m_host->clearOverlays();
    m_host->addOverlays(out.overlays);
  }
  int images = 0;
  for (const QImage& im : out.images) {
    if ((t.outputs & LOUPE_OUTPUT_MASKS) && im.format() == QImage::Format_Grayscale8) {
      m_host->setMask(im, tr("%1: mask").arg(t.label));
    } else if (t.outputs & LOUPE_OUTPUT_IMAGES) {
      m_host->addImageVersion(im, tr("%1: %2").arg(out.task, m_text->text().left(40)));
      ++images;
    }
  }
  QString text = (t.outputs & LOUPE_OUTPUT_TEXT) ? out.text : QString();
  for (const auto& o : out.overlays) {
    const QRectF r = o.points.boundingRect();
    text += QStringLiteral("\n%1  [%2, %3, %4, %5]").arg(o.label.isEmpty() ? QStringLiteral("(region)") : o.label)
                .arg(r.left(), 0, 'f', 0).arg(r.top(), 0, 'f', 0).arg(r.right(), 0, 'f', 0).arg(r.bottom(), 0, 'f', 0);
  }
  if (t.outputs & LOUPE_OUTPUT_NUMBERS)
    for (auto it = out.numbers.begin(); it != out.numbers.end(); ++it)
      text += QStringLiteral("\n%1: %2").arg(it.key(), it.value() == std::floor(it.value()) && std::abs(it.value()) < 1e15
                                                          ? QString::number(qint64(it.value()))
                                                          : QString::number(it.value(), 'g', 6));
  m_output->setPlainText(text.trimmed());
  m_status->setText(tr("Done: %1 region(s), %2 image(s).").arg(out.overlays.size()).arg(images));
  m_host->showStatus(tr("Loupe: %1 done").arg(t.label), 4000);
}

}  // namespace loupe::qt
