# The SDK's layers, lowest first, and what each may include (docs/ARCHITECTURE.md, "Layers"):
#   core, io, text, nn          the base: no model, pipeline or family
#   schedulers                  samplers
#   models/<family>             networks, configs, processors: no pipeline, no family, no session
#   pipelines                   tasks as compositions of models and schedulers
#   families                    sessions: a family's detection, loading, task list and run
#   abi                         the C entry points
# A file may include its own layer and the layers listed for it. Usage: cmake -DSRC=sdk/src -P this
cmake_minimum_required(VERSION 3.20)
if(NOT SRC)
  message(FATAL_ERROR "usage: cmake -DSRC=<absolute path of sdk/src> -P check_layers.cmake")
endif()
set(base "core;io;text;nn")
set(allowed_core "${base}")
set(allowed_io "${base}")
set(allowed_text "${base}")
set(allowed_nn "${base}")
set(allowed_schedulers "${base};schedulers")
set(allowed_models "${base};schedulers;models")
set(allowed_pipelines "${base};schedulers;models;pipelines")
set(allowed_families "${base};schedulers;models;pipelines;families")
set(allowed_abi "${base};schedulers;models;pipelines;families;abi;loupe")  # loupe/loupe.h: the public header
# Within the base: core/ includes nothing from models/, pipelines/ or families/ (checked above) and
# text/ and nn/ stay free of io/ (they work on tensors and strings, not files).
set(allowed_text "core;text")
set(allowed_nn "core;nn")

set(problems "")
set(files 0)
file(GLOB_RECURSE sources "${SRC}/*.h" "${SRC}/*.cpp")
foreach(f IN LISTS sources)
  file(RELATIVE_PATH rel "${SRC}" "${f}")
  string(REGEX MATCH "^[^/]+" layer "${rel}")
  if(NOT DEFINED allowed_${layer})
    string(APPEND problems "\n  ${rel}: the folder '${layer}' is not a layer of check_layers.cmake; add it there and to docs/ARCHITECTURE.md")
    continue()
  endif()
  math(EXPR files "${files} + 1")
  file(STRINGS "${f}" includes REGEX "^[ \t]*#[ \t]*include[ \t]+\"[a-z0-9_]+/")
  foreach(line IN LISTS includes)
    string(REGEX MATCH "\"([a-z0-9_]+)/" _ "${line}")
    set(target "${CMAKE_MATCH_1}")
    if(NOT target IN_LIST allowed_${layer})
      string(STRIP "${line}" line)
      string(APPEND problems "\n  ${rel}: ${line} (${layer}/ may include only: ${allowed_${layer}})")
    endif()
  endforeach()
endforeach()
if(files LESS 40)
  message(FATAL_ERROR "check_layers: only ${files} files under ${SRC}: wrong folder?")
endif()
if(problems)
  message(FATAL_ERROR "an include goes against the layers:${problems}")
endif()
message(STATUS "layers: ${files} files, every include goes down")
