#include "editor_context.h"

#include <QStatusBar>

#include "document.h"
#include "main_window.h"

namespace loupe {

EditorContext::EditorContext(MainWindow* window, Document* document)
    : HostContext(window), m_window(window), m_doc(document) {
  connect(m_doc, &Document::documentReset, this, &HostContext::documentChanged);
  connect(m_doc, &Document::imageChanged, this, &HostContext::imageChanged);
  connect(m_doc, &Document::maskChanged, this, [this] {
    if (!m_doc->inStroke()) emit maskChanged();  // once per stroke, not per dab
  });
  connect(m_doc, &Document::overlaysChanged, this, &HostContext::overlaysChanged);
  connect(m_doc, &Document::overlaySelectionChanged, this, &HostContext::overlaySelectionChanged);
  connect(m_window, &MainWindow::progressCancelRequested, this, &HostContext::cancelRequested);
}

bool EditorContext::hasDocument() const { return !m_doc->isEmpty(); }
QString EditorContext::documentPath() const { return m_doc->path(); }
QImage EditorContext::image() const { return m_doc->image(); }
QImage EditorContext::mask() const { return m_doc->mask(); }

void EditorContext::addImageVersion(const QImage& image, const QString& description) {
  if (m_doc->isEmpty())
    m_doc->reset(image);
  else
    m_doc->addVersion(image, description);
}

bool EditorContext::setMask(const QImage& mask, const QString& description) {
  return m_doc->setMask(mask, description);
}

QList<Overlay> EditorContext::overlays() const { return m_doc->overlays(); }
void EditorContext::addOverlays(const QList<Overlay>& overlays) { m_doc->addOverlays(overlays); }
void EditorContext::clearOverlays() { m_doc->clearOverlays(); }
int EditorContext::selectedOverlay() const { return m_doc->selectedOverlay(); }

QWidget* EditorContext::mainWindow() const { return m_window; }
void EditorContext::addDockWidget(QDockWidget* dock, Qt::DockWidgetArea area) { m_window->addPluginDock(dock, area); }
void EditorContext::addMenuAction(QAction* action) { m_window->addPluginAction(action); }
void EditorContext::showStatus(const QString& message, int timeoutMs) {
  m_window->statusBar()->showMessage(message, timeoutMs);
}
void EditorContext::showProgress(int value, int maximum) { m_window->showProgress(value, maximum); }
void EditorContext::hideProgress() { m_window->hideProgress(); }

}  // namespace loupe
