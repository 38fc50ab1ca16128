#include "catalog.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
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

bool Catalog::load(const QString& path, QString* error) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    if (error) *error = QStringLiteral("cannot read the model catalog %1").arg(path);
    return false;
  }
  QJsonParseError pe;
  const auto doc = QJsonDocument::fromJson(f.readAll(), &pe);
  if (pe.error != QJsonParseError::NoError || !doc.isObject()) {
    if (error) *error = QStringLiteral("%1: %2 at offset %3").arg(path, pe.errorString()).arg(pe.offset);
    return false;
  }
  m_variants.clear();
  for (const auto& fam : doc.object().value("families").toArray()) {
    const auto fo = fam.toObject();
    for (const auto& var : fo.value("variants").toArray()) {
      const auto vo = var.toObject();
      Variant v;
      v.id = vo.value("id").toString();
      v.name = vo.value("name").toString();
      v.repo = vo.value("repo").toString();
      v.folder = vo.value("folder").toString();
      v.license = vo.value("license").toString();
      v.family = fo.value("id").toString();
      v.familyName = fo.value("name").toString();
      v.sizeBytes = qint64(vo.value("size_bytes").toDouble());
      const auto vr = vo.value("vram_bytes").toObject();
      v.vramFp32 = qint64(vr.value("fp32").toDouble());
      v.vramFp16 = qint64(vr.value("fp16").toDouble());
      v.vramBf16 = qint64(vr.value("bf16").toDouble());
      v.tasks = strings(fo.value("tasks"));
      v.files = strings(fo.value("files"));
      m_variants << v;
    }
  }
  if (m_variants.isEmpty()) {
    if (error) *error = QStringLiteral("%1 lists no model variants").arg(path);
    return false;
  }
  return true;
}

QList<VariantStatus> Catalog::scan(const QString& modelsDir) const {
  QList<VariantStatus> out;
  for (const auto& v : m_variants) {
    VariantStatus s;
    s.variant = v;
    s.path = QDir(modelsDir).filePath(v.folder);
    if (!QFileInfo(s.path).isDir()) {
      s.state = InstallState::Missing;
    } else {
      for (const auto& need : v.files) {
        bool any = false;
        for (const auto& alt : need.split('|')) any = any || QFileInfo::exists(QDir(s.path).filePath(alt));
        if (!any) s.missingFiles << need;
      }
      s.state = s.missingFiles.isEmpty() ? InstallState::Installed : InstallState::Incomplete;
    }
    out << s;
  }
  return out;
}

QString Catalog::recommend(const QString& family, qint64 memoryBytes, const QString& precision) const {
  QString best;
  qint64 bestSize = -1;
  for (const auto& v : m_variants) {
    if (v.family != family || v.id.contains(QLatin1String("inpainting"))) continue;
    const qint64 need = v.vram(precision);
    if (need <= memoryBytes && v.sizeBytes > bestSize && !v.id.endsWith(QLatin1String("-ft"))) {
      best = v.id;
      bestSize = v.sizeBytes;
    }
  }
  return best;
}

}  // namespace loupe::qt
