// The model: one image with its versions, a mask layer and overlays. Every image and mask edit
// goes through the undo stack; views listen to the signals.
#pragma once

#include <QImage>
#include <QList>
#include <QObject>
#include <QUndoStack>

#include "brush.h"
#include "loupe_host/plugin.h"

namespace loupe {

class Document : public QObject {
  Q_OBJECT

 public:
  struct Version {
    QImage image;  // Format_ARGB32
    QString description;
  };

  explicit Document(QObject* parent = nullptr);

  // Starts a new document from `image` (converted to ARGB32): one version, empty mask, no
  // overlays, empty undo history. A null image closes the document.
  void reset(const QImage& image, const QString& path = {});
  bool isEmpty() const { return m_versions.isEmpty(); }
  QString path() const { return m_path; }
  void setPath(const QString& path) { m_path = path; }

  QImage image() const;
  QSize size() const { return image().size(); }
  const QImage& mask() const { return m_mask; }  // Format_Grayscale8, 255 = selected
  const QList<Version>& versions() const { return m_versions; }
  int currentVersion() const { return m_current; }
  QUndoStack* undoStack() { return &m_undo; }

  // --- undoable edits ---
  void addVersion(const QImage& image, const QString& description);
  void switchVersion(int index);
  // Replaces the whole mask; false when the size differs from the image.
  bool setMask(const QImage& mask, const QString& text);
  void fillMask();
  void clearMask();
  void invertMask();
  // Makes the mask exactly the area of overlay `index` (box, polygon or quad).
  bool useOverlayAsMask(int index);

  // A brush stroke: dabs paint the mask live; endMaskStroke() records them as one undo step.
  void beginMaskStroke();
  void strokeMaskTo(const QPointF& point, const Brush& brush);
  void endMaskStroke(const QString& text);
  bool inStroke() const { return m_stroke.active; }

  // --- overlays (not undoable: they are results to look at) ---
  const QList<Overlay>& overlays() const { return m_overlays; }
  void addOverlays(const QList<Overlay>& overlays);
  void clearOverlays();
  int selectedOverlay() const { return m_selectedOverlay; }
  void setSelectedOverlay(int index);

  // The mask an overlay covers: pixels whose centre lies inside its shape.
  static QImage overlayMask(const Overlay& overlay, const QSize& size);

 signals:
  void documentReset();
  void imageChanged();
  void versionsChanged();
  // `area` in image pixels. During a stroke it fires per dab (inStroke() is true), then once more
  // for the whole stroke when it ends.
  void maskChanged(const QRect& area);
  void overlaysChanged();
  void overlaySelectionChanged();

 private:
  friend class VersionCommand;
  friend class MaskPatchCommand;
  // Shows version `current` with `mask` (used by the version commands).
  void applyVersionState(int current, const QImage& mask);
  void putMaskPatch(const QRect& area, const QImage& patch);

  QString m_path;
  QList<Version> m_versions;
  int m_current = -1;
  QImage m_mask;
  QList<Overlay> m_overlays;
  int m_selectedOverlay = -1;
  QUndoStack m_undo;

  struct Stroke {
    bool active = false;
    bool hasPoint = false;
    QPointF last;
    QImage before;  // whole mask at stroke start (shared until first change)
    QRect changed;
  } m_stroke;
};

}  // namespace loupe
