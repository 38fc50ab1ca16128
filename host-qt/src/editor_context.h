// The editor's side of the plugin contract: HostContext over the Document and the MainWindow.
#pragma once

#include "loupe_host/plugin.h"

namespace loupe {

class Document;
class MainWindow;

class EditorContext : public HostContext {
  Q_OBJECT

 public:
  EditorContext(MainWindow* window, Document* document);

  bool hasDocument() const override;
  QString documentPath() const override;
  QImage image() const override;
  QImage mask() const override;
  void addImageVersion(const QImage& image, const QString& description) override;
  bool setMask(const QImage& mask, const QString& description) override;

  QList<Overlay> overlays() const override;
  void addOverlays(const QList<Overlay>& overlays) override;
  void clearOverlays() override;
  int selectedOverlay() const override;

  QWidget* mainWindow() const override;
  void addDockWidget(QDockWidget* dock, Qt::DockWidgetArea area) override;
  void addMenuAction(QAction* action) override;
  void showStatus(const QString& message, int timeoutMs) override;
  void showProgress(int value, int maximum) override;
  void hideProgress() override;

 private:
  MainWindow* m_window;
  Document* m_doc;
};

}  // namespace loupe
