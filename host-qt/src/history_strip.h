// Thumbnails of the document's image versions; clicking one switches to it (undoable).
#pragma once

#include <QListWidget>

namespace loupe {

class Document;

class HistoryStrip : public QListWidget {
  Q_OBJECT

 public:
  explicit HistoryStrip(Document* document, QWidget* parent = nullptr);

 private:
  void syncVersions();
  void syncCurrent();

  Document* m_doc;
  bool m_syncing = false;
};

}  // namespace loupe
