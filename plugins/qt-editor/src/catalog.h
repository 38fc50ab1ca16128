// The model catalog (resources/models/catalog.json): families and variants, which are installed in
// a models folder, and which one to recommend for the device's memory.
#pragma once
#include <QList>
#include <QString>
#include <QStringList>

namespace loupe::qt {

struct Variant {
  QString id, name, repo, folder, license, family, familyName;
  qint64 sizeBytes = 0;
  qint64 vramFp32 = 0, vramFp16 = 0, vramBf16 = 0;
  QStringList tasks;
  QStringList files;  // required files; "a|b" = either
  qint64 vram(const QString& precision) const;
};

enum class InstallState { Installed, Missing, Incomplete };

struct VariantStatus {
  Variant variant;
  InstallState state = InstallState::Missing;
  QString path;              // where it is or would be
  QStringList missingFiles;  // for Incomplete
};

class Catalog {
 public:
  // Reads a catalog file; on failure returns false with a message.
  bool load(const QString& path, QString* error);
  const QList<Variant>& variants() const { return m_variants; }
  // Status of each variant in a models folder (a variant lives in <dir>/<folder>).
  QList<VariantStatus> scan(const QString& modelsDir) const;
  // The largest installed-or-not variant of `family` that fits `memoryBytes` at `precision`
  // (empty if none fits).
  QString recommend(const QString& family, qint64 memoryBytes, const QString& precision) const;

 private:
  QList<Variant> m_variants;
};

QString formatBytes(qint64 bytes);

// Demo weights shipped with Loupe: folders named demo-* (resources/demo-models; tiny, random).
bool isDemoModelFolder(const QString& path);

}  // namespace loupe::qt
