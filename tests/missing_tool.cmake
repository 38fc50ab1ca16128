# The test registered in place of one whose tool was not found at configure time (tests/suite.cmake):
# it fails, naming what is missing, so that the suite never shrinks quietly.
message(FATAL_ERROR "${TEST} could not run: ${MISSING} was not found when the build was configured.\n"
  "Install it (scripts/setup-deps.sh installs everything the suite needs) and configure again.")
