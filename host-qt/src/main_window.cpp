#include "main_window.h"

#include <QActionGroup>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QHeaderView>
#include <QImageReader>
#include <QImageWriter>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QStatusBar>
#include <QToolBar>
#include <QToolButton>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <cmath>

#include "canvas.h"
#include "document.h"
#include "editor_context.h"
#include "history_strip.h"
#include "plugin_manager.h"

namespace loupe {

namespace {

QString imageFilter(const QList<QByteArray>& formats) {
  QStringList patterns;
  for (const QByteArray& format : formats) patterns << QStringLiteral("*.") + QString::fromLatin1(format);
  return QObject::tr("Images (%1)").arg(patterns.join(QLatin1Char(' '))) + QStringLiteral(";;") +
         QObject::tr("All files (*)");
}

}  // namespace

MainWindow::MainWindow(QWidget* parent)
    : QMainWindow(parent), m_doc(new Document(this)), m_canvas(new Canvas(m_doc, this)),
      m_history(new HistoryStrip(m_doc, this)), m_context(new EditorContext(this, m_doc)),
      m_plugins(new PluginManager(m_context, this)) {
  setObjectName(QStringLiteral("MainWindow"));
  setCentralWidget(m_canvas);
  setAcceptDrops(true);
  setDockNestingEnabled(true);

  auto* historyDock = new QDockWidget(tr("History"), this);
  historyDock->setObjectName(QStringLiteral("HistoryDock"));
  historyDock->setWidget(m_history);
  historyDock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetClosable);
  addDockWidget(Qt::BottomDockWidgetArea, historyDock);

  createActions();
  m_panelsMenu->addAction(historyDock->toggleViewAction());
  createToolBar();
  createStatusBar();
  restoreSettings();

  connect(m_doc, &Document::documentReset, this, [this] {
    updateTitle();
    updateActions();
  });
  connect(m_doc->undoStack(), &QUndoStack::cleanChanged, this, [this](bool clean) { setWindowModified(!clean); });
  connect(m_doc, &Document::overlaySelectionChanged, this, &MainWindow::updateActions);
  updateTitle();
  updateActions();
}

MainWindow::~MainWindow() {
  m_plugins->shutdownAll();
  // Views and plugin docks go before the Document and HostContext they use.
  qDeleteAll(findChildren<QDockWidget*>(Qt::FindDirectChildrenOnly));
  delete m_canvas;
}

HostContext* MainWindow::hostContext() const { return m_context; }

void MainWindow::createActions() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open..."), QKeySequence::Open, this, &MainWindow::openDialog);
  QAction* save = file->addAction(tr("&Save Image"), QKeySequence::Save, this, [this] {
    if (m_doc->path().isEmpty() || !saveImage(m_doc->path())) saveAsDialog();
  });
  QAction* saveAs = file->addAction(tr("Save Image &As..."), QKeySequence::SaveAs, this, &MainWindow::saveAsDialog);
  QAction* saveMask = file->addAction(tr("Save &Mask As..."), this, &MainWindow::saveMaskDialog);
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

  QMenu* edit = menuBar()->addMenu(tr("&Edit"));
  QAction* undo = m_doc->undoStack()->createUndoAction(this, tr("&Undo"));
  undo->setShortcuts(QKeySequence::Undo);
  QAction* redo = m_doc->undoStack()->createRedoAction(this, tr("&Redo"));
  redo->setShortcuts({QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_Z), QKeySequence(Qt::CTRL | Qt::Key_Y)});
  edit->addAction(undo);
  edit->addAction(redo);
  edit->addSeparator();
  edit->addAction(tr("&Paste Image"), QKeySequence::Paste, this, [this] {
    if (!openFromMimeData(QApplication::clipboard()->mimeData()))
      statusBar()->showMessage(tr("The clipboard holds no image."), 4000);
  });

  QMenu* view = menuBar()->addMenu(tr("&View"));
  QAction* fit = view->addAction(tr("&Fit to Window"), QKeySequence(Qt::CTRL | Qt::Key_0), m_canvas, &Canvas::fitToWindow);
  QAction* actual = view->addAction(tr("&Actual Size"), QKeySequence(Qt::CTRL | Qt::Key_1), m_canvas, &Canvas::zoomActualSize);
  QAction* zoomIn = view->addAction(tr("Zoom &In"), QKeySequence::ZoomIn, m_canvas, [this] { m_canvas->zoomBy(1.25); });
  QAction* zoomOut = view->addAction(tr("Zoom &Out"), QKeySequence::ZoomOut, m_canvas, [this] { m_canvas->zoomBy(0.8); });
  view->addSeparator();
  QAction* showOverlays = view->addAction(tr("Show &Overlays"));
  showOverlays->setCheckable(true);
  showOverlays->setChecked(true);
  showOverlays->setShortcut(QKeySequence(Qt::Key_O));
  connect(showOverlays, &QAction::toggled, m_canvas, &Canvas::setOverlaysVisible);
  view->addAction(tr("&Clear Overlays"), m_doc, &Document::clearOverlays);
  view->addSeparator();
  m_panelsMenu = view->addMenu(tr("&Panels"));

  m_maskMenu = menuBar()->addMenu(tr("&Mask"));
  QMenu* mask = m_maskMenu;
  QAction* fill = mask->addAction(tr("&Fill"), m_doc, &Document::fillMask);
  QAction* clear = mask->addAction(tr("&Clear"), QKeySequence(Qt::Key_Delete), m_doc, &Document::clearMask);
  QAction* invert = mask->addAction(tr("&Invert"), QKeySequence(Qt::CTRL | Qt::Key_I), m_doc, &Document::invertMask);
  mask->addSeparator();
  m_useAsMaskAction = mask->addAction(tr("&Use Selected Overlay as Mask"), QKeySequence(Qt::CTRL | Qt::Key_M), this,
                                      [this] { m_doc->useOverlayAsMask(m_doc->selectedOverlay()); });
  m_useAsMaskAction->setIconText(tr("Use as Mask"));
  m_useAsMaskAction->setToolTip(tr("Make the mask exactly the selected box or polygon (Ctrl+M)"));

  QMenu* tools = menuBar()->addMenu(tr("&Tools"));
  m_tools = new QActionGroup(this);
  const auto addTool = [&](const QString& text, Qt::Key key, Tool tool) {
    QAction* action = tools->addAction(text);
    action->setShortcut(QKeySequence(key));
    action->setCheckable(true);
    action->setChecked(m_canvas->tool() == tool);
    action->setData(int(tool));
    m_tools->addAction(action);
    connect(action, &QAction::triggered, m_canvas, [this, tool] { m_canvas->setTool(tool); });
  };
  addTool(tr("&Select"), Qt::Key_V, Tool::Select);
  addTool(tr("&Brush"), Qt::Key_B, Tool::Brush);
  addTool(tr("&Eraser"), Qt::Key_E, Tool::Eraser);
  connect(m_canvas, &Canvas::toolChanged, this, [this](Tool tool) {
    for (QAction* action : m_tools->actions()) action->setChecked(action->data().toInt() == int(tool));
  });
  tools->addSeparator();
  tools->addAction(tr("Smaller Brush"), QKeySequence(Qt::Key_BracketLeft), this,
                   [this] { m_canvas->setBrushDiameter(std::floor(m_canvas->brushDiameter() / 1.2)); });
  tools->addAction(tr("Larger Brush"), QKeySequence(Qt::Key_BracketRight), this,
                   [this] { m_canvas->setBrushDiameter(std::ceil(m_canvas->brushDiameter() * 1.2)); });

  m_loupeMenu = menuBar()->addMenu(tr("&Loupe"));
  m_pluginSeparator = m_loupeMenu->addSeparator();
  m_loupeMenu->addAction(tr("&Plugins..."), this, &MainWindow::showPluginsDialog);

  m_documentActions = {save, saveAs, saveMask, fit, actual, zoomIn, zoomOut, fill, clear, invert};
}

void MainWindow::createToolBar() {
  QToolBar* bar = addToolBar(tr("Tools"));
  bar->setObjectName(QStringLiteral("ToolsToolBar"));
  bar->setMovable(false);
  bar->addActions(m_tools->actions());
  bar->addSeparator();

  bar->addWidget(new QLabel(tr(" Size "), bar));
  m_brushSize = new QSpinBox(bar);
  m_brushSize->setRange(1, 1000);
  m_brushSize->setSuffix(tr(" px"));
  m_brushSize->setToolTip(tr("Brush diameter in image pixels ([ and ])"));
  m_brushSize->setValue(int(m_canvas->brushDiameter()));
  bar->addWidget(m_brushSize);
  connect(m_brushSize, &QSpinBox::valueChanged, m_canvas, [this](int v) { m_canvas->setBrushDiameter(v); });
  connect(m_canvas, &Canvas::brushDiameterChanged, m_brushSize, [this](double d) { m_brushSize->setValue(int(d)); });

  bar->addWidget(new QLabel(tr(" Hardness "), bar));
  m_hardness = new QSpinBox(bar);
  m_hardness->setRange(0, 100);
  m_hardness->setSuffix(tr(" %"));
  m_hardness->setToolTip(tr("100% is a hard edge, 0% fades from the centre"));
  m_hardness->setValue(int(std::lround(m_canvas->brushHardness() * 100)));
  bar->addWidget(m_hardness);
  connect(m_hardness, &QSpinBox::valueChanged, m_canvas, [this](int v) { m_canvas->setBrushHardness(v / 100.0); });

  bar->addSeparator();
  bar->addActions(m_maskMenu->actions());
}

void MainWindow::createStatusBar() {
  m_progress = new QProgressBar(this);
  m_progress->setMaximumWidth(180);
  m_progress->setVisible(false);
  m_cancel = new QToolButton(this);
  m_cancel->setText(tr("Cancel"));
  m_cancel->setVisible(false);
  connect(m_cancel, &QToolButton::clicked, this, &MainWindow::progressCancelRequested);
  m_pluginProblems = new QToolButton(this);
  m_pluginProblems->setObjectName(QStringLiteral("PluginProblems"));
  m_pluginProblems->setAutoRaise(true);
  m_pluginProblems->setStyleSheet(QStringLiteral("color: #c0392b"));
  m_pluginProblems->setVisible(false);
  connect(m_pluginProblems, &QToolButton::clicked, this, &MainWindow::showPluginsDialog);
  m_cursorLabel = new QLabel(this);
  m_zoomLabel = new QLabel(this);
  statusBar()->addPermanentWidget(m_pluginProblems);
  statusBar()->addPermanentWidget(m_progress);
  statusBar()->addPermanentWidget(m_cancel);
  statusBar()->addPermanentWidget(m_cursorLabel);
  statusBar()->addPermanentWidget(m_zoomLabel);
  connect(m_canvas, &Canvas::cursorMoved, this, [this](const QPoint& p) {
    m_cursorLabel->setText(p.x() < 0 ? QString() : QStringLiteral("%1, %2").arg(p.x()).arg(p.y()));
  });
  connect(m_canvas, &Canvas::zoomChanged, this,
          [this](double zoom) { m_zoomLabel->setText(QStringLiteral("%1%").arg(zoom * 100, 0, 'f', 0)); });
}

void MainWindow::restoreSettings() {
  QSettings settings;
  if (!restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray())) resize(1200, 800);
  restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
  m_canvas->setBrushDiameter(settings.value(QStringLiteral("brush/diameter"), m_canvas->brushDiameter()).toDouble());
  m_canvas->setBrushHardness(settings.value(QStringLiteral("brush/hardness"), m_canvas->brushHardness()).toDouble());
  m_hardness->setValue(int(std::lround(m_canvas->brushHardness() * 100)));
}

void MainWindow::saveSettings() const {
  QSettings settings;
  settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
  settings.setValue(QStringLiteral("window/state"), saveState());
  settings.setValue(QStringLiteral("brush/diameter"), m_canvas->brushDiameter());
  settings.setValue(QStringLiteral("brush/hardness"), m_canvas->brushHardness());
}

QString MainWindow::dialogFolder() const {
  return QSettings().value(QStringLiteral("files/lastFolder"),
                           QStandardPaths::writableLocation(QStandardPaths::PicturesLocation)).toString();
}

void MainWindow::rememberFolder(const QString& file) {
  QSettings().setValue(QStringLiteral("files/lastFolder"), QFileInfo(file).absolutePath());
}

void MainWindow::updateTitle() {
  QString name = tr("Untitled");
  if (m_doc->isEmpty())
    name.clear();
  else if (!m_doc->path().isEmpty())
    name = QFileInfo(m_doc->path()).fileName();
  setWindowTitle(name.isEmpty() ? tr("Loupe Editor") : tr("%1[*] - Loupe Editor").arg(name));
  setWindowModified(!m_doc->undoStack()->isClean());
}

void MainWindow::updateActions() {
  for (QAction* action : std::as_const(m_documentActions)) action->setEnabled(!m_doc->isEmpty());
  m_useAsMaskAction->setEnabled(m_doc->selectedOverlay() >= 0);
}

bool MainWindow::openImage(const QString& path) {
  QImageReader reader(path);
  reader.setAutoTransform(true);
  const QImage image = reader.read();
  if (image.isNull()) {
    statusBar()->showMessage(tr("Cannot open %1: %2").arg(QFileInfo(path).fileName(), reader.errorString()));
    return false;
  }
  m_doc->reset(image, QFileInfo(path).absoluteFilePath());
  rememberFolder(path);
  statusBar()->showMessage(tr("Opened %1 (%2 x %3)").arg(QFileInfo(path).fileName()).arg(image.width()).arg(image.height()), 5000);
  return true;
}

bool MainWindow::openFromMimeData(const QMimeData* data) {
  if (!data) return false;
  for (const QUrl& url : data->urls())
    if (url.isLocalFile() && openImage(url.toLocalFile())) return true;
  if (data->hasImage()) {
    const QImage image = qvariant_cast<QImage>(data->imageData());
    if (!image.isNull()) {
      m_doc->reset(image);
      statusBar()->showMessage(tr("Pasted image (%1 x %2)").arg(image.width()).arg(image.height()), 5000);
      return true;
    }
  }
  return false;
}

bool MainWindow::saveImage(const QString& path) {
  if (m_doc->isEmpty()) return false;
  QImageWriter writer(path);
  if (!writer.write(m_doc->image())) {
    statusBar()->showMessage(tr("Cannot save %1: %2").arg(QFileInfo(path).fileName(), writer.errorString()));
    return false;
  }
  m_doc->setPath(QFileInfo(path).absoluteFilePath());
  m_doc->undoStack()->setClean();
  rememberFolder(path);
  updateTitle();
  statusBar()->showMessage(tr("Saved %1").arg(QFileInfo(path).fileName()), 5000);
  return true;
}

bool MainWindow::saveMask(const QString& path) {
  if (m_doc->isEmpty()) return false;
  QImageWriter writer(path);
  if (!writer.write(m_doc->mask())) {
    statusBar()->showMessage(tr("Cannot save the mask to %1: %2").arg(QFileInfo(path).fileName(), writer.errorString()));
    return false;
  }
  rememberFolder(path);
  statusBar()->showMessage(tr("Saved mask %1").arg(QFileInfo(path).fileName()), 5000);
  return true;
}

void MainWindow::openDialog() {
  const QString path = QFileDialog::getOpenFileName(this, tr("Open Image"), dialogFolder(),
                                                    imageFilter(QImageReader::supportedImageFormats()));
  if (!path.isEmpty() && !openImage(path))
    QMessageBox::warning(this, tr("Open Image"), statusBar()->currentMessage());
}

bool MainWindow::saveAsDialog() {
  const QString start = m_doc->path().isEmpty() ? dialogFolder() + QStringLiteral("/untitled.png") : m_doc->path();
  const QString path = QFileDialog::getSaveFileName(this, tr("Save Image"), start,
                                                    imageFilter(QImageWriter::supportedImageFormats()));
  if (path.isEmpty()) return false;
  if (saveImage(path)) return true;
  QMessageBox::warning(this, tr("Save Image"), statusBar()->currentMessage());
  return false;
}

void MainWindow::saveMaskDialog() {
  const QString base = m_doc->path().isEmpty() ? dialogFolder() + QStringLiteral("/untitled")
                                               : m_doc->path().left(m_doc->path().lastIndexOf(QLatin1Char('.')));
  const QString path = QFileDialog::getSaveFileName(this, tr("Save Mask"), base + QStringLiteral("-mask.png"),
                                                    tr("PNG images (*.png)"));
  if (!path.isEmpty() && !saveMask(path)) QMessageBox::warning(this, tr("Save Mask"), statusBar()->currentMessage());
}

void MainWindow::loadPlugins(const QStringList& extraDirs) {
  m_plugins->loadFromDirectories(PluginManager::searchDirectories(extraDirs));
  const int failed = m_plugins->failureCount();
  const int loaded = int(m_plugins->records().size()) - failed;
  for (const PluginRecord& record : m_plugins->records())
    if (!record.loaded) qWarning("loupe-editor: plugin %s: %s", qPrintable(record.path), qPrintable(record.error));
  m_pluginProblems->setText(tr("%n plugin(s) failed to load", nullptr, failed));
  m_pluginProblems->setToolTip(tr("Show Loupe > Plugins"));
  m_pluginProblems->setVisible(failed > 0);
  if (failed > 0)
    statusBar()->showMessage(tr("%n plugin(s) failed to load - see Loupe > Plugins", nullptr, failed));
  else if (loaded > 0)
    statusBar()->showMessage(tr("%n plugin(s) loaded", nullptr, loaded), 5000);
}

void MainWindow::addPluginDock(QDockWidget* dock, Qt::DockWidgetArea area) {
  if (dock->objectName().isEmpty()) dock->setObjectName(dock->windowTitle());  // for saveState()
  dock->setParent(this);
  addDockWidget(area, dock);
  m_panelsMenu->addAction(dock->toggleViewAction());
}

void MainWindow::addPluginAction(QAction* action) {
  action->setParent(this);
  m_loupeMenu->insertAction(m_pluginSeparator, action);
}

void MainWindow::showProgress(int value, int maximum) {
  m_progress->setRange(0, std::max(0, maximum));
  m_progress->setValue(value);
  m_progress->setVisible(true);
  m_cancel->setVisible(true);
}

void MainWindow::hideProgress() {
  m_progress->setVisible(false);
  m_cancel->setVisible(false);
}

void MainWindow::showPluginsDialog() {
  QDialog dialog(this);
  dialog.setWindowTitle(tr("Plugins"));
  dialog.resize(720, 360);
  auto* layout = new QVBoxLayout(&dialog);
  auto* tree = new QTreeWidget(&dialog);
  tree->setHeaderLabels({tr("Plugin"), tr("Status"), tr("File")});
  tree->setRootIsDecorated(false);
  for (const PluginRecord& record : m_plugins->records()) {
    auto* item = new QTreeWidgetItem(tree);
    item->setText(0, record.name.isEmpty() ? QFileInfo(record.path).fileName() : record.name);
    item->setText(1, record.loaded ? tr("Loaded") : tr("Failed: %1").arg(record.error));
    item->setText(2, record.path);
    item->setToolTip(1, item->text(1));
    if (!record.loaded) item->setForeground(1, QColor(200, 40, 40));
  }
  tree->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
  layout->addWidget(tree);
  const QStringList dirs = PluginManager::searchDirectories({});
  auto* where = new QLabel(tr("Searched: %1 (and --plugin-dir)").arg(dirs.join(QStringLiteral(", "))), &dialog);
  where->setWordWrap(true);
  where->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(where);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, &dialog);
  connect(buttons, &QDialogButtonBox::rejected, &dialog, &QDialog::reject);
  layout->addWidget(buttons);
  dialog.exec();
}

void MainWindow::closeEvent(QCloseEvent* event) {
  saveSettings();
  m_plugins->shutdownAll();
  event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls() || event->mimeData()->hasImage()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  if (openFromMimeData(event->mimeData())) event->acceptProposedAction();
}

}  // namespace loupe
