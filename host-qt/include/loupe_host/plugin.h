// Loupe editor plugin interface: the public contract between host-qt (loupe-editor) and its plugins.
//
// A plugin is a Qt plugin (QPluginLoader) whose root object implements loupe::HostPlugin:
//
//   class MyPlugin : public QObject, public loupe::HostPlugin {
//     Q_OBJECT
//     Q_PLUGIN_METADATA(IID LOUPE_HOST_PLUGIN_IID)
//     Q_INTERFACES(loupe::HostPlugin)
//   public:
//     QString name() const override { return "My plugin"; }
//     bool initialize(loupe::HostContext* host, QString* error) override;
//     void shutdown() override;
//   };
//
// The editor looks for plugins in, in this order: every --plugin-dir given on the command line,
// each folder of $LOUPE_PLUGIN_PATH (colon-separated), <exe dir>/plugins and
// <exe dir>/../lib/loupe-plugins. A file that fails to load, has another IID or whose initialize()
// returns false is listed in Loupe > Plugins with the reason; the editor runs on without it.
//
// Build: link the CMake target loupe_host_api (include path only). Do not run moc on this header
// and do not link the editor: HostContext's meta-object lives in the editor executable, which
// exports it, so a plugin's references to it resolve when the editor loads the plugin.
//
// Threading: call HostContext only from the GUI thread. Run inference elsewhere and come back with
// a queued signal; report progress with showProgress() and stop when cancelRequested() arrives.
#pragma once

#include <QImage>
#include <QList>
#include <QObject>
#include <QPolygonF>
#include <QString>
#include <QtPlugin>

class QAction;
class QDockWidget;
class QWidget;

#define LOUPE_HOST_PLUGIN_IID "org.loupe.HostPlugin/1.0"

namespace loupe {

// An annotation drawn over the image, in image pixel coordinates (0,0 is the top-left corner of the
// top-left pixel). Overlays are a view of results: they are not part of the undo history.
struct Overlay {
  enum class Kind {
    Box,      // axis-aligned rectangle; points holds its 4 corners
    Polygon,  // closed polygon (segmentation outline); points holds >= 3 vertices
    Quad,     // rotated quadrilateral (e.g. a text line); points holds 4 corners in order
  };
  Kind kind = Kind::Box;
  QPolygonF points;
  QString label;      // shown next to the shape; may be empty
  double score = -1;  // confidence in [0, 1]; negative means "no score"

  static Overlay box(const QRectF& rect, const QString& label = {}, double score = -1) {
    const QRectF r = rect.normalized();
    return {Kind::Box, QPolygonF({r.topLeft(), r.topRight(), r.bottomRight(), r.bottomLeft()}), label,
            score};
  }
  static Overlay polygon(const QPolygonF& points, const QString& label = {}, double score = -1) {
    return {Kind::Polygon, points, label, score};
  }
  static Overlay quad(const QPolygonF& corners, const QString& label = {}, double score = -1) {
    return {Kind::Quad, corners, label, score};
  }
};

// What the editor offers a plugin. Owned by the editor; valid from initialize() to shutdown().
// Every document edit made through it is one undoable step in the editor's history.
class HostContext : public QObject {
  Q_OBJECT

 public:
  using QObject::QObject;
  ~HostContext() override = default;

  // --- the document -------------------------------------------------------------------------
  // False when no image is open; image() and mask() are then null.
  virtual bool hasDocument() const = 0;
  // File the document was opened from or saved to; empty for a pasted image.
  virtual QString documentPath() const = 0;
  // The current image version, always QImage::Format_ARGB32.
  virtual QImage image() const = 0;
  // The mask layer: QImage::Format_Grayscale8, same size as image(); 255 = selected, 0 = not.
  virtual QImage mask() const = 0;

  // Adds `image` (any format; converted to ARGB32) as a new version and makes it current.
  // A different size is allowed (e.g. upscaling): the mask is scaled along, overlays are cleared.
  // With no document open, `image` starts a new unsaved document instead (e.g. text-to-image).
  virtual void addImageVersion(const QImage& image, const QString& description) = 0;
  // Replaces the mask (converted to Grayscale8). Returns false, changing nothing, when there is no
  // document or the size differs from image().
  virtual bool setMask(const QImage& mask, const QString& description) = 0;

  // --- overlays -----------------------------------------------------------------------------
  virtual QList<Overlay> overlays() const = 0;
  virtual void addOverlays(const QList<Overlay>& overlays) = 0;
  virtual void clearOverlays() = 0;
  // Index into overlays() of the overlay the user selected, or -1.
  virtual int selectedOverlay() const = 0;

  // --- user interface ----------------------------------------------------------------------
  // The editor's main window (parent for dialogs).
  virtual QWidget* mainWindow() const = 0;
  // Docks `dock` (the editor takes ownership) and lists it in the View menu.
  virtual void addDockWidget(QDockWidget* dock, Qt::DockWidgetArea area = Qt::RightDockWidgetArea) = 0;
  // Appends `action` to the "Loupe" menu (the editor takes ownership).
  virtual void addMenuAction(QAction* action) = 0;
  // Shows `message` in the status bar; timeoutMs 0 keeps it until the next message.
  virtual void showStatus(const QString& message, int timeoutMs = 0) = 0;
  // Shows a progress bar with a Cancel button in the status bar: value of maximum, or a busy
  // indicator when maximum is 0. hideProgress() removes it.
  virtual void showProgress(int value, int maximum) = 0;
  virtual void hideProgress() = 0;

 signals:
  // Another document was opened (or the first one): everything may have changed.
  void documentChanged();
  // The current image changed: new version, version switch, undo/redo of either.
  void imageChanged();
  // The mask changed (paint, fill, setMask, undo/redo...).
  void maskChanged();
  // Overlays were added or cleared.
  void overlaysChanged();
  // The user selected another overlay (see selectedOverlay()).
  void overlaySelectionChanged();
  // The user pressed Cancel next to the progress bar.
  void cancelRequested();
};

// The interface a plugin's root object implements.
class HostPlugin {
 public:
  virtual ~HostPlugin() = default;
  // Human-readable name, shown in Loupe > Plugins.
  virtual QString name() const = 0;
  // Called once, after the main window exists. Add docks, actions and connections here.
  // On failure return false and set *error (non-null) to a message for the user; the editor then
  // calls nothing else on this plugin (undo what you added to the window before returning).
  virtual bool initialize(HostContext* host, QString* error) = 0;
  // Called once before the editor closes: stop work and threads. Docks and actions added
  // through the host are deleted by the editor afterwards.
  virtual void shutdown() = 0;
};

}  // namespace loupe

Q_DECLARE_INTERFACE(loupe::HostPlugin, LOUPE_HOST_PLUGIN_IID)
