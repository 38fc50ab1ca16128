// loupe.h compiles as C++ too, with its init macros.
#include "loupe/loupe.h"

int loupe_header_compiles_as_cxx() {
  loupe_runtime_options ro = LOUPE_RUNTIME_OPTIONS_INIT;
  loupe_session_options so = LOUPE_SESSION_OPTIONS_INIT;
  loupe_session_info si = LOUPE_SESSION_INFO_INIT;
  return static_cast<int>(ro.struct_size + so.struct_size + si.struct_size);
}
