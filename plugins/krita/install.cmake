# Copies the Krita plug-in into a pykrita folder: cmake -DSRC=plugins/krita -DDEST=<pykrita>
#   -DBINDING=samples/python/loupe.py -DLIBRARY=<libloupe.so.0> -P install.cmake
# DEST/kritapykrita_loupe_krita.desktop, DEST/loupe_krita/*.py (with loupe.py, the binding) and
# DEST/loupe_krita/loupe_paths.json: {"library": LIBRARY}, read by loupe_krita/locate.py.
foreach(v SRC DEST BINDING LIBRARY)
  if(NOT ${v})
    message(FATAL_ERROR "install.cmake: -D${v}=... is missing")
  endif()
endforeach()
file(MAKE_DIRECTORY ${DEST}/loupe_krita)
file(GLOB files ${SRC}/loupe_krita/*.py ${SRC}/loupe_krita/*.html)
file(COPY ${files} ${BINDING} DESTINATION ${DEST}/loupe_krita)
file(COPY ${SRC}/kritapykrita_loupe_krita.desktop DESTINATION ${DEST})
file(WRITE ${DEST}/loupe_krita/loupe_paths.json "{\"library\": \"${LIBRARY}\"}\n")
message(STATUS "Loupe plug-in in ${DEST} (library ${LIBRARY}); enable it in Krita: Settings > Configure Krita > "
               "Python Plugin Manager > Loupe, then restart Krita")
