"""The Krita side of the registration: the extension (a Tools > Scripts action that shows the
docker, the engine closed when Krita quits) and the docker's factory."""
from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from .docker import LoupeDocker

DOCKER_ID = "loupe_docker"


class LoupeExtension(Extension):
    def setup(self):
        Krita.instance().notifier().applicationClosing.connect(self.closing)

    def createActions(self, window):
        action = window.createAction("loupe_show_docker", "Loupe", "tools/scripts")
        action.triggered.connect(self.show_docker)

    def show_docker(self):
        for d in Krita.instance().dockers():
            if d.objectName() == DOCKER_ID:
                d.show()
                d.raise_()

    def closing(self):
        from . import docker
        if docker._ENGINE is not None:
            docker._ENGINE.close()


def register():
    app = Krita.instance()
    app.addExtension(LoupeExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, LoupeDocker))
