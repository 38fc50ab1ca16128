#include "edit_panel.h"

#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>
#include <limits>

namespace loupe::qt {

namespace {
const ParamDesc* param(const TaskDesc& t, const QString& name) {
  for (const auto& p : t.params)
    if (p.name == name) return &p;
  return nullptr;
}
int clampInt(double v) { return int(qBound(double(std::numeric_limits<int>::min()), v, double(std::numeric_limits<int>::max()))); }
// A spin box with the range, default and help of the task's parameter.
QSpinBox* intBox(const TaskDesc& t, const QString& name, const QString& object, QWidget* parent) {
  auto* b = new QSpinBox(parent);
  b->setObjectName(object);
  if (const ParamDesc* p = param(t, name)) {
    b->setRange(clampInt(p->min), clampInt(p->max));
    b->setValue(clampInt(p->defaultNumber));
    if (!p->unit.isEmpty()) b->setSuffix(" " + p->unit);
    b->setToolTip(p->help);
  }
  return b;
}
QDoubleSpinBox* realBox(const TaskDesc& t, const QString& name, const QString& object, QWidget* parent) {
  auto* b = new QDoubleSpinBox(parent);
  b->setObjectName(object);
  if (const ParamDesc* p = param(t, name)) {
    b->setRange(p->min, p->max);
    b->setSingleStep(p->step > 0 ? p->step : 0.1);
    b->setValue(p->defaultNumber);
    if (!p->unit.isEmpty()) b->setSuffix(" " + p->unit);
    b->setToolTip(p->help);
  }
  return b;
}
// What a session can do in an edit, read from the description of its tasks (the panel names none):
// a finder finds regions from words, a painter repaints under a mask.
bool canFind(const QList<TaskDesc>& tasks) {
  for (const auto& t : tasks)
    if ((t.inputs & LOUPE_INPUT_TEXT) && (t.outputs & (LOUPE_OUTPUT_POLYGONS | LOUPE_OUTPUT_BOXES)) && !t.runtime) return true;
  return false;
}
bool canPaint(const QList<TaskDesc>& tasks) {
  for (const auto& t : tasks)
    if ((t.required & LOUPE_INPUT_MASK) && (t.outputs & LOUPE_OUTPUT_IMAGES) && !t.runtime) return true;
  return false;
}
}  // namespace

EditPanel::EditPanel(LoupeClient* client, loupe::HostContext* host, QWidget* parent)
    : QWidget(parent), m_client(client), m_host(host) {
  setObjectName("LoupeEditPanel");
  for (const auto& t : describeTasks(nullptr))
    if (t.name == "edit") m_task = t;
  auto* lay = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  m_target = new QLineEdit(this);
  m_target->setObjectName("editTarget");
  m_target->setPlaceholderText(tr("e.g. the red car"));
  m_target->setToolTip(m_task.textHelp);
  m_prompt = new QLineEdit(this);
  m_prompt->setObjectName("editPrompt");
  m_prompt->setPlaceholderText(tr("e.g. a blue bicycle (empty: remove it)"));
  if (const ParamDesc* p = param(m_task, "prompt")) m_prompt->setToolTip(p->help);
  m_finder = new QLineEdit(this);
  m_finder->setObjectName("editFinder");
  m_finder->setPlaceholderText(tr("model folder that finds (Florence-2)"));
  m_painter = new QLineEdit(this);
  m_painter->setObjectName("editPainter");
  m_painter->setPlaceholderText(tr("model folder that paints (SD inpainting)"));
  m_grow = intBox(m_task, "grow", "editGrow", this);
  m_feather = realBox(m_task, "feather", "editFeather", this);
  m_steps = intBox(m_task, "steps", "editSteps", this);
  m_strength = realBox(m_task, "strength", "editStrength", this);
  m_seed = intBox(m_task, "seed", "editSeed", this);
  form->addRow(tr("What"), m_target);
  form->addRow(tr("With what"), m_prompt);
  form->addRow(tr("Finder"), m_finder);
  form->addRow(tr("Painter"), m_painter);
  form->addRow(tr("Grow"), m_grow);
  form->addRow(tr("Feather"), m_feather);
  form->addRow(tr("Steps"), m_steps);
  form->addRow(tr("Strength"), m_strength);
  form->addRow(tr("Seed"), m_seed);
  lay->addLayout(form);
  auto* buttons = new QHBoxLayout;
  m_find = new QPushButton(tr("Find"), this);
  m_find->setObjectName("editFind");
  m_find->setToolTip(tr("Find it and show the mask; adjust the mask with the brush, then Paint"));
  m_paint = new QPushButton(tr("Paint"), this);
  m_paint->setObjectName("editPaint");
  m_paint->setToolTip(tr("Repaint the masked area"));
  m_findPaint = new QPushButton(tr("Find and paint"), this);
  m_findPaint->setObjectName("editFindPaint");
  m_cancel = new QPushButton(tr("Cancel"), this);
  m_cancel->setObjectName("editCancel");
  m_cancel->setEnabled(false);
  buttons->addWidget(m_find);
  buttons->addWidget(m_paint);
  buttons->addWidget(m_findPaint);
  buttons->addWidget(m_cancel);
  lay->addLayout(buttons);
  m_progress = new QProgressBar(this);
  m_progress->setObjectName("editProgress");
  lay->addWidget(m_progress);
  m_status = new QLabel(this);
  m_status->setObjectName("editStatus");
  m_status->setWordWrap(true);
  lay->addWidget(m_status);
  lay->addStretch(1);

  connect(m_find, &QPushButton::clicked, this, [this] { start(Step::Find); });
  connect(m_paint, &QPushButton::clicked, this, [this] { start(Step::Paint); });
  connect(m_findPaint, &QPushButton::clicked, this, [this] { start(Step::FindAndPaint); });
  connect(m_cancel, &QPushButton::clicked, m_client, &LoupeClient::cancel);
  connect(m_host, &loupe::HostContext::cancelRequested, this, [this] {
    if (m_running != Step::None) m_client->cancel();
  });
  connect(m_client, &LoupeClient::sessionOpened, this, [this] { suggestModels(); });
  connect(m_client, &LoupeClient::progress, this, [this](int step, int total, const QString& stage, const QImage&) {
    if (m_running == Step::None) return;
    m_progress->setRange(0, qMax(total, 1));
    m_progress->setValue(step);
    m_status->setText(tr("%1: %2 / %3").arg(stage).arg(step).arg(total));
    m_host->showProgress(step, total);
  });
  connect(m_client, &LoupeClient::finished, this, &EditPanel::onFinished);
  connect(m_client, &LoupeClient::failed, this, [this](const QString& err, bool cancelled) {
    if (m_running == Step::None) return;
    setRunning(false);
    m_status->setText(cancelled ? tr("Cancelled.") : tr("Failed: %1").arg(err));
    m_host->showStatus(cancelled ? tr("Cancelled") : tr("Loupe: %1").arg(err), 5000);
  });
  suggestModels();
}

// The open model fills the finder or painter field it can serve, when that field is empty.
void EditPanel::suggestModels() {
  if (!m_client->hasSession()) return;
  const auto& tasks = m_client->sessionTasks();
  if (m_finder->text().isEmpty() && canFind(tasks)) m_finder->setText(m_client->sessionPath());
  if (m_painter->text().isEmpty() && canPaint(tasks)) m_painter->setText(m_client->sessionPath());
}

void EditPanel::setRunning(bool running) {
  if (!running) {
    m_running = Step::None;
    m_host->hideProgress();
  }
  m_find->setEnabled(!running);
  m_paint->setEnabled(!running);
  m_findPaint->setEnabled(!running);
  m_cancel->setEnabled(running);
}

void EditPanel::start(Step step) {
  if (!m_host->hasDocument()) {
    m_status->setText(tr("Open an image first."));
    return;
  }
  if (m_target->text().trimmed().isEmpty()) {
    m_status->setText(tr("Say what to change (What)."));
    return;
  }
  TaskInput in;
  in.task = "edit";
  in.image = m_host->image();
  in.strings["target"] = m_target->text();
  in.strings["prompt"] = m_prompt->text();
  in.ints["grow"] = m_grow->value();
  in.ints["steps"] = m_steps->value();
  in.ints["seed"] = m_seed->value();
  in.floats["feather"] = m_feather->value();
  in.floats["strength"] = m_strength->value();
  if (step == Step::Paint) {
    // the document's mask: the found one, perhaps adjusted with the brush
    const QImage mask = m_host->mask();
    bool any = false;
    for (int y = 0; y < mask.height() && !any; ++y) {
      const uchar* row = mask.constScanLine(y);
      for (int x = 0; x < mask.width() && !any; ++x) any = row[x] >= 128;
    }
    if (!any) {
      m_status->setText(tr("Nothing is masked: Find first, or paint the mask with the brush."));
      return;
    }
    in.mask = mask;
  } else {
    in.finder = m_finder->text();
  }
  if (step == Step::Find) in.ints["paint"] = 0;
  else in.painter = m_painter->text();
  QString err;
  if (!m_client->run(in, &err)) {
    m_status->setText(tr("Failed: %1").arg(err));
    return;
  }
  m_running = step;
  setRunning(true);
  m_progress->setValue(0);
  m_status->setText(step == Step::Find ? tr("Finding '%1' ...").arg(m_target->text()) : tr("Editing ..."));
}

void EditPanel::onFinished(const JobOutput& out) {
  if (m_running == Step::None || out.task != "edit") return;
  const Step step = m_running;
  setRunning(false);
  if (out.images.isEmpty()) return;
  const QImage mask = out.images.last();  // the mask is the last image
  const QString what = m_target->text().left(40);
  if (!out.overlays.isEmpty()) {
    m_host->clearOverlays();
    m_host->addOverlays(out.overlays);
  }
  if (step == Step::Find) {
    m_host->setMask(mask, tr("Edit by words: found '%1'").arg(what));
    m_status->setText(tr("Found %1 region(s): adjust the mask with the brush if needed, then Paint.").arg(out.overlays.size()));
    return;
  }
  if (out.images.size() < 2) return;
  const QString with = m_prompt->text().isEmpty() ? tr("removed") : m_prompt->text().left(40);
  m_host->addImageVersion(out.images.first(), tr("Edit by words: %1 -> %2").arg(what, with));
  m_status->setText(tr("Done."));
  m_host->showStatus(tr("Loupe: edit done"), 4000);
}

}  // namespace loupe::qt
