#include "catalog.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonObject>

namespace loupe::qt {

qint64 Variant::vram(const QString& precision) const {
  if (precision == QLatin1String("fp32")) return vramFp32;
  if (precision == QLatin1String("bf16")) return vramBf16;
  return vramFp16;
}

QString formatBytes(qint64 bytes) {
  if (bytes >= (qint64(1) << 30)) return QString::number(double(bytes) / double(qint64(1) << 30), 'f', 1) + " GiB";
  return QString::number(double(bytes) / double(1 << 20), 'f', 0) + " MiB";
}

bool isDemoModelFolder(const QString& path) {
  return QFileInfo(QDir::cleanPath(path)).fileName().startsWith(QLatin1String("demo-"));
}

static QStringList strings(const QJsonValue& v) {
  QStringList out;
  for (const auto& x : v.toArray()) out << x.toString();
  return out;
}

QList<VariantStatus> catalogStatuses(const QJsonArray& catalog) {
  QList<VariantStatus> out;
  for (const auto& e : catalog) {
    const auto o = e.toObject();
    VariantStatus s;
    Variant& v = s.variant;
    v.id = o.value("id").toString();
    v.name = o.value("name").toString();
    v.repo = o.value("repo").toString();
    v.folder = o.value("folder").toString();
    v.license = o.value("license").toString();
    v.family = o.value("family").toString();
    v.familyName = o.value("family_name").toString();
    v.sizeBytes = qint64(o.value("size_bytes").toDouble());
    const auto vr = o.value("vram_bytes").toObject();
    v.vramFp32 = qint64(vr.value("fp32").toDouble());
    v.vramFp16 = qint64(vr.value("fp16").toDouble());
    v.vramBf16 = qint64(vr.value("bf16").toDouble());
    v.tasks = strings(o.value("tasks"));
    v.files = strings(o.value("files"));
    const QString state = o.value("state").toString();
    s.state = state == QLatin1String("installed")    ? InstallState::Installed
              : state == QLatin1String("incomplete") ? InstallState::Incomplete
                                                     : InstallState::Missing;
    s.path = o.value("path").toString();
    s.missingFiles = strings(o.value("missing_files"));
    out << s;
  }
  return out;
}

QStringList catalogFamilies(const QList<VariantStatus>& statuses) {
  QStringList out;
  for (const auto& s : statuses)
    if (!out.contains(s.variant.family)) out << s.variant.family;
  return out;
}

QString recommendVariant(const QList<VariantStatus>& statuses, const QString& family, qint64 memoryBytes,
                         const QString& precision) {
  QString best;
  qint64 bestSize = -1;
  for (const auto& s : statuses) {
    const Variant& v = s.variant;
    if (v.family != family || v.id.contains(QLatin1String("inpainting")) || v.id.contains(QLatin1String("refiner")))
      continue;
    const qint64 need = v.vram(precision);
    if (need <= memoryBytes && v.sizeBytes > bestSize && !v.id.endsWith(QLatin1String("-ft"))) {
      best = v.id;
      bestSize = v.sizeBytes;
    }
  }
  return best;
}

}  // namespace loupe::qt
