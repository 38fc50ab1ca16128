// The Tasks panel: the tasks the open session offers, built from the SDK's description of them
// (loupe_task_describe / loupe_task_param): the task list grouped as the description groups it, the
// text input, one widget per parameter (advanced ones folded away), the document's image, mask and
// selected region as the task's inputs ask; Run / Cancel, progress with a live preview for
// diffusion, and results on the canvas (overlays, new image versions) and as copyable text.
#pragma once
#include <QHash>
#include <QVariantMap>
#include <QWidget>

#include "loupe_client.h"

class QComboBox;
class QDoubleSpinBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;

namespace loupe {
class HostContext;
}

namespace loupe::qt {

class TasksPanel : public QWidget {
  Q_OBJECT
 public:
  TasksPanel(LoupeClient* client, loupe::HostContext* host, QWidget* parent = nullptr);
  void setTask(const QString& task);
  void setText(const QString& text);
  // Builds the input from the document and the widgets; false + message when something is missing.
  bool buildInput(TaskInput* in, QString* error) const;
  void run();
  QPushButton* runButton() const { return m_run; }
  QPushButton* cancelButton() const { return m_cancel; }
  QPlainTextEdit* output() const { return m_output; }
  QLabel* status() const { return m_status; }
  QLabel* demoNotice() const { return m_demo; }

 private:
  // Lists the session's tasks (none without a session), keeping the chosen task when offered.
  void refreshTasks();
  // Shows the rows the chosen task uses and builds its parameter form.
  void updateFields();
  // One widget per parameter of the task: its default, or the value the user gave it before.
  void buildForm(const TaskDesc& task);
  QWidget* paramWidget(const QString& task, const ParamDesc& p, QWidget* parent);
  // Reads a parameter's widget into the input, as the parameter's type says.
  void readParam(const ParamDesc& p, TaskInput* in) const;
  const TaskDesc* currentTask() const;
  bool sessionMakesImages() const;
  // Fills the VAE and LoRA choosers from the models folder (VAE/, vae/; Lora/, loras/), keeping the
  // current choices.
  void refreshAdapters();
  void browseAdapter(QComboBox* box, const QString& title);
  void onFinished(const JobOutput& out);
  LoupeClient* m_client;
  loupe::HostContext* m_host;
  QFormLayout* m_form;  // task, text, VAE, LoRA
  QComboBox* m_task;
  QLabel* m_taskHelp;
  QLabel* m_textLabel;
  QLineEdit* m_text;
  QComboBox* m_vae;   // "" = the model's own
  QComboBox* m_lora;  // "" = none
  QDoubleSpinBox* m_loraWeight;
  QWidget* m_vaeRow;
  QWidget* m_loraRow;
  QWidget* m_paramsHost;        // holds m_params
  QWidget* m_params = nullptr;  // the chosen task's parameter form (rebuilt when the task changes)
  bool m_advancedOpen = false;  // the "Advanced" group is unfolded
  QHash<QString, QWidget*> m_paramWidgets;  // by parameter name, in m_params
  QHash<QString, QVariantMap> m_changed;    // per task: the values the user gave its parameters
  QPushButton* m_run;
  QPushButton* m_cancel;
  QProgressBar* m_progress;
  QLabel* m_preview;
  QLabel* m_status;
  QLabel* m_demo;  // shown while demo weights are open
  QPlainTextEdit* m_output;
  TaskDesc m_running;  // the task of the job running from this panel (name "" = none)
};

}  // namespace loupe::qt
