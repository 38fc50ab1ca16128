#include "troubleshooting_panel.h"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDateTime>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QTimer>
#include <QVBoxLayout>

#include "catalog.h"
#include "loupe_client.h"

namespace loupe::qt {

static const char* kLevels[] = {"debug", "info", "warning", "error"};

TroubleshootingPanel::TroubleshootingPanel(LoupeClient* client, QWidget* parent)
    : QWidget(parent), m_client(client) {
  setObjectName("LoupeTroubleshootingPanel");
  auto* lay = new QVBoxLayout(this);
  m_summary = new QLabel(this);
  m_summary->setObjectName("summary");
  m_summary->setTextFormat(Qt::PlainText);
  m_summary->setWordWrap(true);
  m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
  lay->addWidget(m_summary);
  lay->addWidget(new QLabel(tr("Problems found:"), this));
  m_problems = new QListWidget(this);
  m_problems->setWordWrap(true);
  m_problems->setMaximumHeight(120);
  lay->addWidget(m_problems);
  auto* row = new QHBoxLayout;
  m_selftest = new QPushButton(tr("Run self-test"), this);
  m_selftest->setObjectName("runSelftest");
  auto* copy = new QPushButton(tr("Copy report"), this);
  copy->setObjectName("copyReport");
  row->addWidget(m_selftest);
  row->addWidget(copy);
  lay->addLayout(row);
  m_selftestResult = new QLabel(this);
  m_selftestResult->setWordWrap(true);
  m_selftestResult->setObjectName("selftestResult");
  lay->addWidget(m_selftestResult);
  auto* logRow = new QHBoxLayout;
  logRow->addWidget(new QLabel(tr("Log, from level:"), this));
  m_level = new QComboBox(this);
  for (const char* l : kLevels) m_level->addItem(QString::fromLatin1(l));
  m_level->setCurrentIndex(1);
  logRow->addWidget(m_level);
  lay->addLayout(logRow);
  m_log = new QPlainTextEdit(this);
  m_log->setReadOnly(true);
  m_log->setMaximumBlockCount(2000);
  lay->addWidget(m_log, 1);

  connect(m_selftest, &QPushButton::clicked, this, [this] {
    TaskInput in;
    in.task = "selftest";
    QString err;
    if (!m_client->run(in, &err)) {
      m_selftestResult->setText(tr("Self-test not started: %1").arg(err));
      return;
    }
    m_selftest->setEnabled(false);
    m_selftestResult->setText(tr("Self-test running..."));
  });
  connect(copy, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(report()); });
  connect(m_level, QOverload<int>::of(&QComboBox::currentIndexChanged), this, [this] { refilterLog(); });
  connect(client, &LoupeClient::logRecord, this, &TroubleshootingPanel::appendLog);
  connect(client, &LoupeClient::finished, this, [this](const JobOutput& out) {
    if (out.task == QLatin1String("selftest")) showSelftest(out);
    refresh();
  });
  connect(client, &LoupeClient::failed, this, [this](const QString& err, bool) {
    m_selftest->setEnabled(true);
    if (m_selftestResult->text() == tr("Self-test running...")) m_selftestResult->setText(tr("Self-test failed: %1").arg(err));
    refresh();
  });
  m_timer = new QTimer(this);
  m_timer->setInterval(2000);
  connect(m_timer, &QTimer::timeout, this, [this] {
    if (isVisible()) refresh();
  });
  m_timer->start();
  refresh();
}

void TroubleshootingPanel::refresh() {
  m_lastJson = m_client->diagnosticsJson();
  const auto d = QJsonDocument::fromJson(m_lastJson.toUtf8()).object();
  if (d.isEmpty()) {
    m_summary->setText(tr("The Loupe runtime is not running."));
    return;
  }
  const auto b = d.value("build").toObject();
  QStringList lines;
  lines << tr("Loupe %1, libtorch %2, CUDA %3")
               .arg(b.value("loupe").toString(), b.value("libtorch").toString(),
                    b.value("cuda").toBool() ? b.value("cuda_runtime").toString() : tr("not in this build"));
  lines << tr("Jobs run on: %1").arg(d.value("runtime").toObject().value("device").toString());
  for (const auto& dv : d.value("devices").toArray()) {
    const auto o = dv.toObject();
    const qint64 total = qint64(o.value("memory_total").toDouble()), freeb = qint64(o.value("memory_free").toDouble());
    QString line = QStringLiteral("%1: %2 used of %3, %4 free").arg(o.value("name").toString(), formatBytes(total - freeb),
                                                                   formatBytes(total), formatBytes(freeb));
    if (o.contains("compute_capability"))
      line += QStringLiteral(" (sm %1, driver %2)").arg(o.value("compute_capability").toString(), o.value("driver").toString());
    lines << line;
  }
  const auto cpu = d.value("cpu").toObject();
  if (!cpu.isEmpty()) {
    QStringList isa;
    for (const auto& f : cpu.value("isa").toArray()) isa << f.toString();
    const auto blas = cpu.value("blas").toObject();
    lines << tr("CPU: %1, %2 threads (%3 physical cores); instruction sets: %4")
                 .arg(cpu.value("model").toString())
                 .arg(cpu.value("threads").toInt())
                 .arg(cpu.value("physical_cores").toInt())
                 .arg(isa.isEmpty() ? tr("none detected") : isa.join(QLatin1Char(' ')));
    lines << tr("BLAS: %1 %2 (%3)")
                 .arg(blas.value("kind").toString(), blas.value("core").toString(), blas.value("library").toString());
  }
  const auto sessions = d.value("sessions").toArray();
  if (sessions.isEmpty()) lines << tr("No model loaded.");
  for (const auto& sv : sessions) {
    const auto o = sv.toObject();
    lines << tr("Model %1 on %2, %3, %4%5")
                 .arg(o.value("variant").toString(), o.value("device").toString(), o.value("dtype").toString(),
                      formatBytes(qint64(o.value("bytes").toDouble())),
                      o.value("resident").toBool() ? QString() : tr(" (offloaded to host memory)"));
  }
  m_summary->setText(lines.join('\n'));
  m_problems->clear();
  for (const auto& pv : d.value("problems").toArray()) {
    const auto o = pv.toObject();
    auto* item = new QListWidgetItem(QStringLiteral("[%1] %2\n    → %3")
                                         .arg(o.value("severity").toString(), o.value("message").toString(),
                                              o.value("remedy").toString()));
    m_problems->addItem(item);
  }
  if (m_problems->count() == 0) m_problems->addItem(tr("None."));
}

QString TroubleshootingPanel::summaryText() const { return m_summary->text(); }

QString TroubleshootingPanel::report() const {
  QString r = QStringLiteral("Loupe bug report, %1\n\n").arg(QDateTime::currentDateTimeUtc().toString(Qt::ISODate));
  r += m_summary->text() + "\n\nSelf-test: " + m_selftestResult->text() + "\n\nDiagnostics:\n" + m_lastJson;
  return r;
}

void TroubleshootingPanel::appendLog(int level, const QString& message) {
  m_records.append({level, message});
  if (m_records.size() > 2000) m_records.removeFirst();
  if (level >= m_level->currentIndex())
    m_log->appendPlainText(QStringLiteral("[%1] %2").arg(QString::fromLatin1(kLevels[qBound(0, level, 3)]), message));
}

void TroubleshootingPanel::refilterLog() {
  m_log->clear();
  for (const auto& r : m_records)
    if (r.first >= m_level->currentIndex())
      m_log->appendPlainText(QStringLiteral("[%1] %2").arg(QString::fromLatin1(kLevels[qBound(0, r.first, 3)]), r.second));
}

void TroubleshootingPanel::showSelftest(const JobOutput& out) {
  m_selftest->setEnabled(true);
  m_selftestResult->setText(out.text);
}

}  // namespace loupe::qt
