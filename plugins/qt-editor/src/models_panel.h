// The model-variant selector: the catalog's variants, which are installed in the models folder and
// which are missing (with where to get them), a recommendation from the device's memory, the
// precision and device, and opening a variant as the session (with progress). A folder the person
// points at is checked and its problems listed. Below, the models already on this computer
// (loupe_models_scan: the Hugging Face cache, web-UI folders, folders the person adds), matched to
// the catalog; a catalog variant found there counts as installed. Missing variants are downloaded
// into the models folder (Download, with progress and cancel, off the UI thread).
#pragma once
#include <QJsonObject>
#include <QWidget>

#include "catalog.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QProgressBar;
class QPushButton;
class QTreeWidget;

namespace loupe::qt {

class LoupeClient;

class ModelsPanel : public QWidget {
  Q_OBJECT
 public:
  ModelsPanel(LoupeClient* client, const QString& catalogPath, QWidget* parent = nullptr);
  void setModelsDir(const QString& dir);
  QString modelsDir() const;
  QString precision() const;
  QString device() const;
  // Lists the models folder's variants at once and looks for models on this computer off the UI
  // thread (the list below and the variants found there follow when the scan ends).
  void rescan();
  bool scanning() const;
  // The variants as listed (for tests): id -> state.
  QList<VariantStatus> statuses() const { return m_statuses; }
  QString recommendation() const { return m_recommended; }
  QTreeWidget* tree() const { return m_tree; }
  QTreeWidget* foundTree() const { return m_found; }
  // Folders searched for models besides the default places (saved in the settings).
  QStringList extraDirs() const { return m_extraDirs; }
  void addExtraDir(const QString& dir);
  // Downloads the catalog variant into the models folder.
  void downloadVariant(const QString& id);
  QListWidget* problems() const { return m_problems; }
  // Checks a folder with the SDK and lists its problems.
  void checkFolder(const QString& path);
  // Opens the variant (or a folder) as the session.
  void openVariant(const QString& id);

 signals:
  void settingsChanged();  // device / precision / models folder: the runtime must restart

 private:
  LoupeClient* m_client;
  QList<VariantStatus> m_statuses;
  QString m_recommended;
  QLineEdit* m_dir;
  QComboBox* m_device;
  QComboBox* m_precision;
  QTreeWidget* m_tree;
  QLabel* m_recommend;
  QPushButton* m_open;
  QProgressBar* m_busy;
  QLabel* m_state;
  QListWidget* m_problems;
  QString m_catalogPath;
  QStringList m_extraDirs;
  QTreeWidget* m_found;
  QLabel* m_foundLabel;
  QPushButton* m_download;
  QPushButton* m_cancelDownload;
  QProgressBar* m_downloadProgress;
  QLabel* m_downloadState;
  QJsonObject m_foundDoc;  // the last scan's result
  void listVariants();
  void listFound();
  void updateDownloadButton();
};

}  // namespace loupe::qt
