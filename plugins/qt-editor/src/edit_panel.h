// "Edit by words": what to change and with what, a finder model and a painter model (task "edit",
// loupe_edit_submit). Find shows the found mask on the canvas (the document's mask layer, so the
// brush and eraser adjust it) and the regions as overlays; Paint repaints under the document's
// mask (found and maybe adjusted) and adds the result as one image version (one undoable step).
// "Find and paint" does both in one job. The settings come from the task's description.
#pragma once
#include <QWidget>

#include "loupe_client.h"

class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace loupe::qt {

class EditPanel : public QWidget {
  Q_OBJECT
 public:
  EditPanel(LoupeClient* client, loupe::HostContext* host, QWidget* parent = nullptr);

 private:
  enum class Step { None, Find, Paint, FindAndPaint };
  void start(Step step);
  void onFinished(const JobOutput& out);
  void setRunning(bool running);
  void suggestModels();

  LoupeClient* m_client;
  loupe::HostContext* m_host;
  TaskDesc m_task;  // the library's description of "edit"
  QLineEdit *m_target, *m_prompt, *m_finder, *m_painter;
  QSpinBox *m_grow, *m_steps, *m_seed;
  QDoubleSpinBox *m_feather, *m_strength;
  QPushButton *m_find, *m_paint, *m_findPaint, *m_cancel;
  QProgressBar* m_progress;
  QLabel* m_status;
  Step m_running = Step::None;
};

}  // namespace loupe::qt
