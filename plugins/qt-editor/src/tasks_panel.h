// The Tasks panel: every task the SDK offers, with its parameters, Run / Cancel, progress with a
// live preview for diffusion, and results on the canvas (overlays, new image versions) and as
// copyable text.
#pragma once
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
class QSpinBox;
class QCheckBox;

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
  void updateFields();
  // Fills the VAE and LoRA choosers from the models folder (VAE/, vae/; Lora/, loras/), keeping the
  // current choices.
  void refreshAdapters();
  void browseAdapter(QComboBox* box, const QString& title);
  void onFinished(const JobOutput& out);
  LoupeClient* m_client;
  loupe::HostContext* m_host;
  QFormLayout* m_form;
  QComboBox* m_task;
  QLineEdit* m_text;
  QLineEdit* m_negative;
  QSpinBox* m_steps;
  QDoubleSpinBox* m_guidance;
  QDoubleSpinBox* m_strength;
  QSpinBox* m_seed;
  QSpinBox* m_width;
  QSpinBox* m_height;
  QComboBox* m_sampler;
  QComboBox* m_vae;   // "" = the model's own
  QComboBox* m_lora;  // "" = none
  QDoubleSpinBox* m_loraWeight;
  QWidget* m_vaeRow;
  QWidget* m_loraRow;
  QPushButton* m_run;
  QPushButton* m_cancel;
  QProgressBar* m_progress;
  QLabel* m_preview;
  QLabel* m_status;
  QLabel* m_demo;  // shown while demo weights are open
  QPlainTextEdit* m_output;
  QList<QWidget*> m_textRows, m_genRows, m_sizeRows, m_strengthRows, m_inpaintRows;
  QCheckBox* m_onlyMasked = nullptr;
  QCheckBox* m_colorFix = nullptr;
  QSpinBox* m_maskBlur = nullptr;
  QSpinBox* m_feather = nullptr;
  QString m_runningTask;
};

}  // namespace loupe::qt
