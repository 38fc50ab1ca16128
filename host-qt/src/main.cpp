// loupe-editor [image] [--plugin-dir DIR]... [--screenshot out.png]
#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>

#include "main_window.h"

int main(int argc, char** argv) {
  // Plug-ins run libtorch, whose OpenMP pool (libgomp) keeps idle threads spinning by default: on a
  // desktop shared with other programs that made a job up to 50x slower on 2 cores. libgomp reads
  // this when a plug-in loads it, so it is set here, before any plug-in loads; a value the person
  // set is kept.
  if (!qEnvironmentVariableIsSet("OMP_WAIT_POLICY")) qputenv("OMP_WAIT_POLICY", "passive");
  QApplication app(argc, argv);
  QCoreApplication::setOrganizationName(QStringLiteral("Loupe"));
  QCoreApplication::setApplicationName(QStringLiteral("Loupe Editor"));
  QCoreApplication::setApplicationVersion(QStringLiteral("0.3.0"));

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Loupe image editor; AI tasks come from plugins."));
  parser.addHelpOption();
  parser.addVersionOption();
  parser.addPositionalArgument(QStringLiteral("image"), QStringLiteral("Image to open."), QStringLiteral("[image]"));
  const QCommandLineOption pluginDir(QStringLiteral("plugin-dir"),
                                     QStringLiteral("Also load plugins from DIR (repeatable)."), QStringLiteral("DIR"));
  const QCommandLineOption screenshot(QStringLiteral("screenshot"),
                                      QStringLiteral("Save a picture of the window to FILE and exit."),
                                      QStringLiteral("FILE"));
  parser.addOption(pluginDir);
  parser.addOption(screenshot);
  parser.process(app);

  loupe::MainWindow window;
  window.loadPlugins(parser.values(pluginDir));
  if (!parser.positionalArguments().isEmpty()) window.openImage(parser.positionalArguments().first());
  window.show();

  if (parser.isSet(screenshot)) {
    // Let layout, docks and the first paint settle before grabbing.
    QTimer::singleShot(1000, &window, [&] {
      const QString path = parser.value(screenshot);
      const bool saved = window.grab().save(path);
      if (!saved) qWarning("loupe-editor: cannot write screenshot %s", qPrintable(path));
      window.close();
      QCoreApplication::exit(saved ? 0 : 1);
    });
  }
  return app.exec();
}
