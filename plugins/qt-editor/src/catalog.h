// The model catalog as the SDK reports it: loupe_models_scan's "catalog" list (the catalog built into
// libloupe, or the file the host names), each entry with its memory needs and its state in the
// models folder. The editor reads no catalog file itself; this turns the SDK's entries into rows and
// picks a recommendation for the device's memory.
#pragma once
#include <QJsonArray>
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

// The entries of a scan's "catalog" list, in its order.
QList<VariantStatus> catalogStatuses(const QJsonArray& catalog);
// The families the entries belong to, in order of appearance.
QStringList catalogFamilies(const QList<VariantStatus>& statuses);
// The largest variant of `family` that fits `memoryBytes` at `precision` (not an inpainting, refiner
// or fine-tuned one); empty if none fits.
QString recommendVariant(const QList<VariantStatus>& statuses, const QString& family, qint64 memoryBytes,
                         const QString& precision);

QString formatBytes(qint64 bytes);

// Demo weights shipped with Loupe: folders named demo-* (resources/demo-models; tiny, random).
bool isDemoModelFolder(const QString& path);

}  // namespace loupe::qt
