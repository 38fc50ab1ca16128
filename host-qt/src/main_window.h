// The editor window: menus, tool bar, canvas, history strip, status bar, and the plugin host.
#pragma once

#include <QMainWindow>

class QActionGroup;
class QLabel;
class QMenu;
class QMimeData;
class QProgressBar;
class QSpinBox;
class QToolButton;

namespace loupe {

class Canvas;
class Document;
class EditorContext;
class HistoryStrip;
class HostContext;
class PluginManager;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  Document* document() const { return m_doc; }
  Canvas* canvas() const { return m_canvas; }
  HostContext* hostContext() const;
  PluginManager* plugins() const { return m_plugins; }

  // Opens an image file as a new document; on failure the reason is in the status bar.
  bool openImage(const QString& path);
  // Dropped or pasted data: the first local image file among the URLs, else image data.
  bool openFromMimeData(const QMimeData* data);
  // Save the current image version / the mask; the format follows the file suffix.
  bool saveImage(const QString& path);
  bool saveMask(const QString& path);

  // Loads plugins from PluginManager::searchDirectories(extraDirs) and reports failures.
  void loadPlugins(const QStringList& extraDirs);

  // Used by plugins through HostContext.
  void addPluginDock(QDockWidget* dock, Qt::DockWidgetArea area);
  void addPluginAction(QAction* action);
  void showProgress(int value, int maximum);
  void hideProgress();

 signals:
  void progressCancelRequested();

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void createActions();
  void createToolBar();
  void createStatusBar();
  void restoreSettings();
  void saveSettings() const;
  void updateTitle();
  void updateActions();
  void showPluginsDialog();
  void openDialog();
  bool saveAsDialog();
  void saveMaskDialog();
  QString dialogFolder() const;
  void rememberFolder(const QString& file);

  Document* m_doc;
  Canvas* m_canvas;
  HistoryStrip* m_history;
  EditorContext* m_context;
  PluginManager* m_plugins;

  QMenu* m_loupeMenu = nullptr;
  QMenu* m_panelsMenu = nullptr;
  QMenu* m_maskMenu = nullptr;
  QAction* m_pluginSeparator = nullptr;
  QList<QAction*> m_documentActions;  // enabled only with an open document
  QAction* m_useAsMaskAction = nullptr;
  QActionGroup* m_tools = nullptr;
  QSpinBox* m_brushSize = nullptr;
  QSpinBox* m_hardness = nullptr;
  QLabel* m_cursorLabel = nullptr;
  QLabel* m_zoomLabel = nullptr;
  QProgressBar* m_progress = nullptr;
  QToolButton* m_cancel = nullptr;
  QToolButton* m_pluginProblems = nullptr;  // stays in the status bar while any plugin failed
};

}  // namespace loupe
