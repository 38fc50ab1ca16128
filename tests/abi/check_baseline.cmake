# Compares libloupe with the committed ABI baseline. Added functions are fine (the ABI only grows);
# anything removed or changed fails, with abidiff's report.
execute_process(COMMAND ${ABIDIFF} --headers-dir2 ${HEADERS} --no-added-syms --exported-interfaces-only ${BASELINE} ${LIB}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "abidiff found an ABI change against ${BASELINE} (exit ${rc}):\n${out}${err}\n"
    "If the change is intended, update the baseline with tools/update-abi-baseline.sh")
endif()
message(STATUS "ABI matches the baseline")
