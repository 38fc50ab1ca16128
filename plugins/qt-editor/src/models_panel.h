// The model-variant selector: the catalog's variants, which are installed in the models folder and
// which are missing (with where to get them), a recommendation from the device's memory, the
// precision and device, and opening a variant as the session (with progress). A folder the person
// points at is checked and its problems listed.
#pragma once
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
  void rescan();
  // The variants as listed (for tests): id -> state.
  QList<VariantStatus> statuses() const { return m_statuses; }
  QString recommendation() const { return m_recommended; }
  QTreeWidget* tree() const { return m_tree; }
  QListWidget* problems() const { return m_problems; }
  // Checks a folder with the SDK and lists its problems.
  void checkFolder(const QString& path);
  // Opens the variant (or a folder) as the session.
  void openVariant(const QString& id);

 signals:
  void settingsChanged();  // device / precision / models folder: the runtime must restart

 private:
  LoupeClient* m_client;
  Catalog m_catalog;
  QString m_catalogError;
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
};

}  // namespace loupe::qt
