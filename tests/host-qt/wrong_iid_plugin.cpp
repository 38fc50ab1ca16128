// A valid Qt plugin with another IID: the editor must refuse it by its metadata.
#include <QObject>
#include <QtPlugin>

class NotALoupePlugin : public QObject {
  Q_OBJECT
  Q_PLUGIN_METADATA(IID "org.example.NotLoupe/1.0")
};

#include "wrong_iid_plugin.moc"
