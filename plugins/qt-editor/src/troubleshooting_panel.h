// Troubleshooting: the SDK's diagnostics (build, devices, memory, sessions) refreshed live, the
// detected problems with remedies, the self-test, the log with a level filter, and a copyable report.
#pragma once
#include <QWidget>

class QComboBox;
class QLabel;
class QListWidget;
class QPlainTextEdit;
class QPushButton;
class QTimer;

namespace loupe::qt {

class LoupeClient;
struct JobOutput;

class TroubleshootingPanel : public QWidget {
  Q_OBJECT
 public:
  TroubleshootingPanel(LoupeClient* client, QWidget* parent = nullptr);
  // Re-reads the diagnostics now (also every 2 s while visible).
  void refresh();
  QString summaryText() const;
  QString report() const;  // what "Copy report" puts on the clipboard
  QListWidget* problems() const { return m_problems; }
  QPushButton* selftestButton() const { return m_selftest; }
  QLabel* selftestResult() const { return m_selftestResult; }
  QPlainTextEdit* log() const { return m_log; }

 public slots:
  void appendLog(int level, const QString& message);
  void showSelftest(const loupe::qt::JobOutput& out);

 private:
  void refilterLog();
  LoupeClient* m_client;
  QLabel* m_summary;
  QListWidget* m_problems;
  QPushButton* m_selftest;
  QLabel* m_selftestResult;
  QComboBox* m_level;
  QPlainTextEdit* m_log;
  QTimer* m_timer;
  QString m_lastJson;
  QList<QPair<int, QString>> m_records;
};

}  // namespace loupe::qt
