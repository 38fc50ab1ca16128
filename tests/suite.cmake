# The test suite's inventory: every test is declared whether or not the tool it needs was found, so
# that a missing GIMP, mono, abidiff, xvfb-run or python3 can never make the suite shrink quietly.
#
#   loupe_test(NAME <name> [NEEDS <variable>...] [MISSING "<what is missing (apt-get install <pkg>)>"]
#              COMMAND <command> [<arg>...] [WORKING_DIRECTORY <dir>])
#       add_test() when every NEEDS variable is true; otherwise a test of the same name that FAILS,
#       saying what is missing (a missing tool is never a skip).
#   loupe_suite_gtest(<target> [TEST_PREFIX <prefix>])
#       after gtest_discover_tests(<target> ...): the suite expects every test the binary lists.
#   loupe_suite_part(<part> <variable> "<how to build it>")
#       a part of the suite that is only configured when <variable> is true (the editor, the GIMP
#       plug-in, the samples); a part that is off is reported as missing from the suite.
#   loupe_allow_skip(<test> "<reason>")
#       the only tests that may skip, by name, each with the reason its output must state (hardware
#       this machine may lack, a fixture only the GPU machine makes). Any other skip is a failure.
#
# At the end of the configure step ${CMAKE_BINARY_DIR}/loupe-suite.cmake is written; scripts/test.sh
# runs tests/check_suite.cmake on it and on CTest's JUnit report: the run fails unless every test the
# suite defines ran and passed, or skipped for its allowed reason, and nothing else ran.
include_guard(GLOBAL)

function(loupe_test)
  cmake_parse_arguments(PARSE_ARGV 0 T "" "NAME;MISSING;WORKING_DIRECTORY" "NEEDS;COMMAND")
  if(NOT T_NAME OR NOT T_COMMAND OR T_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "loupe_test(NAME <name> [NEEDS <var>...] [MISSING <text>] COMMAND ...): got ${ARGV}")
  endif()
  get_property(declared GLOBAL PROPERTY LOUPE_SUITE_TESTS)
  if(T_NAME IN_LIST declared)
    message(FATAL_ERROR "loupe_test: ${T_NAME} is declared twice")
  endif()
  set_property(GLOBAL APPEND PROPERTY LOUPE_SUITE_TESTS "${T_NAME}")
  set(absent "")
  foreach(var IN LISTS T_NEEDS)
    if(NOT ${var})
      list(APPEND absent ${var})
    endif()
  endforeach()
  if(absent)
    if(NOT T_MISSING)
      string(REPLACE ";" ", " T_MISSING "${absent}")
    endif()
    message(WARNING "${T_NAME}: ${T_MISSING} not found: the test is registered and fails until it is "
                    "installed (scripts/setup-deps.sh installs everything the suite needs)")
    add_test(NAME ${T_NAME} COMMAND ${CMAKE_COMMAND} "-DTEST=${T_NAME}" "-DMISSING=${T_MISSING}"
      -P ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/missing_tool.cmake)
  elseif(T_WORKING_DIRECTORY)
    add_test(NAME ${T_NAME} COMMAND ${T_COMMAND} WORKING_DIRECTORY ${T_WORKING_DIRECTORY})
  else()
    add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  endif()
endfunction()

function(loupe_suite_gtest target)
  cmake_parse_arguments(PARSE_ARGV 1 G "" "TEST_PREFIX" "")
  if(G_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "loupe_suite_gtest(<target> [TEST_PREFIX <prefix>]): got ${ARGV}")
  endif()
  set_property(GLOBAL APPEND PROPERTY LOUPE_SUITE_GTEST "$<TARGET_FILE:${target}>|${G_TEST_PREFIX}")
endfunction()

function(loupe_suite_part part variable how)
  if(${variable})
    set_property(GLOBAL APPEND PROPERTY LOUPE_SUITE_PARTS "${part}|ON|")
  else()
    message(WARNING "${part}: not built (${variable} is OFF), so its tests are not in this build's suite "
                    "and scripts/test.sh fails: ${how}")
    set_property(GLOBAL APPEND PROPERTY LOUPE_SUITE_PARTS "${part}|OFF|${variable} is OFF: ${how}")
  endif()
endfunction()

function(loupe_allow_skip test reason)
  set_property(GLOBAL APPEND PROPERTY LOUPE_SUITE_SKIPS "${test}|${reason}")
endfunction()

# Called once, when the top-level directory is done (after every add_subdirectory).
function(loupe_suite_write)
  set(content "# Written by CMake (tests/suite.cmake); read by tests/check_suite.cmake. Do not edit.\n")
  foreach(kind TESTS GTEST PARTS SKIPS)
    get_property(items GLOBAL PROPERTY LOUPE_SUITE_${kind})
    string(APPEND content "set(SUITE_${kind} [==[${items}]==])\n")
  endforeach()
  file(GENERATE OUTPUT ${CMAKE_BINARY_DIR}/loupe-suite.cmake CONTENT "${content}")
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL loupe_suite_write)
