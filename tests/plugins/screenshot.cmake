# Opens the editor under Xvfb with the Loupe plugin (and the host's test plugin, which puts a box
# overlay on the image) and writes a screenshot of the main window; fails if none was written.
file(REMOVE ${OUT})
execute_process(COMMAND ${XVFB_RUN} -a -s "-screen 0 1400x900x24" ${EDITOR} ${IMAGE}
  --plugin-dir ${PLUGINS} --plugin-dir ${TEST_PLUGINS} --screenshot ${OUT}
  RESULT_VARIABLE rc TIMEOUT 120)
if(NOT rc EQUAL 0 OR NOT EXISTS ${OUT})
  message(FATAL_ERROR "the editor did not write ${OUT} (exit ${rc})")
endif()
file(SIZE ${OUT} size)
if(size LESS 20000)
  message(FATAL_ERROR "${OUT} is only ${size} bytes: an empty window?")
endif()
message(STATUS "screenshot: ${OUT} (${size} bytes)")
