#include "history_strip.h"

#include "document.h"

namespace loupe {

namespace {
constexpr QSize kThumbnail(96, 72);
}

HistoryStrip::HistoryStrip(Document* document, QWidget* parent) : QListWidget(parent), m_doc(document) {
  setViewMode(IconMode);
  setFlow(LeftToRight);
  setWrapping(false);
  setMovement(Static);
  setResizeMode(Adjust);
  setIconSize(kThumbnail);
  setSpacing(4);
  setSelectionMode(SingleSelection);
  setHorizontalScrollBarPolicy(Qt::ScrollBarAsNeeded);
  setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setFixedHeight(kThumbnail.height() + 56);

  connect(m_doc, &Document::documentReset, this, [this] {
    clear();
    syncVersions();
  });
  connect(m_doc, &Document::versionsChanged, this, &HistoryStrip::syncVersions);
  connect(m_doc, &Document::imageChanged, this, &HistoryStrip::syncCurrent);
  connect(this, &QListWidget::currentRowChanged, this, [this](int row) {
    if (!m_syncing && row >= 0) m_doc->switchVersion(row);
  });
  syncVersions();
}

// Versions are only ever appended or removed from the end, so existing thumbnails are kept.
void HistoryStrip::syncVersions() {
  m_syncing = true;
  const QList<Document::Version>& versions = m_doc->versions();
  while (count() > versions.size()) delete takeItem(count() - 1);
  for (int i = count(); i < versions.size(); ++i) {
    const Document::Version& version = versions.at(i);
    QPixmap thumbnail = QPixmap::fromImage(
        version.image.scaled(kThumbnail, Qt::KeepAspectRatio, Qt::SmoothTransformation));
    auto* item = new QListWidgetItem(QIcon(thumbnail), QStringLiteral("%1 %2").arg(i + 1).arg(version.description));
    item->setToolTip(tr("%1 (%2 x %3)").arg(version.description).arg(version.image.width()).arg(version.image.height()));
    item->setSizeHint(QSize(kThumbnail.width() + 24, kThumbnail.height() + 36));
    addItem(item);
  }
  m_syncing = false;
  syncCurrent();
}

void HistoryStrip::syncCurrent() {
  m_syncing = true;
  setCurrentRow(m_doc->currentVersion());
  m_syncing = false;
}

}  // namespace loupe
