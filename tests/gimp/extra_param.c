/* libloupe-gimp-extra-param.so: a parameter added to the SDK's task table, without touching the
 * plug-in (tests/gimp, case "dialogs"). Preloaded (LD_PRELOAD) into GIMP, the plug-in and
 * loupe-gimp-expect, it stands between them and libloupe:
 *
 *  - loupe_task_describe / loupe_task_param describe one more parameter of the task "detect": a
 *    choice "loupe_test_style" (plain, fancy; default fancy), as a new row of the table would;
 *  - loupe_request_set_string/_int/_float append "<setter> <key>=<value>" to the file
 *    LOUPE_TEST_EXTRA_LOG (what the plug-in sends, by type), and keep that key from libloupe (which
 *    would refuse a key its table does not have); the others go on to libloupe.
 *
 * Everything else goes to libloupe unchanged. It does not link libloupe (GIMP itself must not load
 * it): the real functions are found with dlsym(RTLD_NEXT). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/loupe.h"

#define EXTRA_TASK "detect"
#define EXTRA_NAME "loupe_test_style"

static const char *const kChoices[] = {"plain", "fancy"};

static void *next(const char *name) {
  void *f = dlsym(RTLD_NEXT, name);
  if (!f) {
    fprintf(stderr, "loupe-gimp-extra-param: %s not found\n", name);
    abort();
  }
  return f;
}

/* The real description of the task at index, and whether it is the one that gets the parameter. */
static int real_describe(loupe_session *session, size_t index, loupe_task_info *out) {
  loupe_status (*f)(loupe_session *, size_t, loupe_task_info *) =
      (loupe_status(*)(loupe_session *, size_t, loupe_task_info *))next("loupe_task_describe");
  return f(session, index, out);
}

LOUPE_API loupe_status loupe_task_describe(loupe_session *session, size_t index, loupe_task_info *out) {
  const loupe_status st = real_describe(session, index, out);
  if (st == LOUPE_OK && out->name && strcmp(out->name, EXTRA_TASK) == 0) out->param_count += 1;
  return st;
}

LOUPE_API loupe_status loupe_task_param(loupe_session *session, size_t task_index, size_t param_index,
                                        loupe_param_info *out) {
  loupe_status (*f)(loupe_session *, size_t, size_t, loupe_param_info *) =
      (loupe_status(*)(loupe_session *, size_t, size_t, loupe_param_info *))next("loupe_task_param");
  loupe_task_info info = LOUPE_TASK_INFO_INIT;
  if (real_describe(session, task_index, &info) == LOUPE_OK && info.name && strcmp(info.name, EXTRA_TASK) == 0 &&
      param_index == info.param_count) {
    loupe_param_info p = LOUPE_PARAM_INFO_INIT;
    p.name = EXTRA_NAME;
    p.type = LOUPE_PARAM_CHOICE;
    p.label = "Style";
    p.help = "a parameter the test added to the task table";
    p.unit = "";
    p.default_string = "fancy";
    p.choice_count = 2;
    p.choices = kChoices;
    p.advanced = 0;
    memcpy(out, &p, out->struct_size < sizeof p ? out->struct_size : sizeof p);
    return LOUPE_OK;
  }
  return f(session, task_index, param_index, out);
}

/* Logs the call; 1 when the key is the added parameter's (libloupe must not see it). */
static int taken(const char *setter, const char *key, const char *value) {
  const char *log = getenv("LOUPE_TEST_EXTRA_LOG");
  FILE *f;
  if (log && *log && (f = fopen(log, "a")) != NULL) {
    fprintf(f, "%s %s=%s\n", setter, key ? key : "(null)", value);
    fclose(f);
  }
  return key && strcmp(key, EXTRA_NAME) == 0;
}

LOUPE_API loupe_status loupe_request_set_string(loupe_request *request, const char *key, const char *value) {
  loupe_status (*f)(loupe_request *, const char *, const char *) =
      (loupe_status(*)(loupe_request *, const char *, const char *))next("loupe_request_set_string");
  if (taken("set_string", key, value ? value : "(null)")) return LOUPE_OK;
  return f(request, key, value);
}

LOUPE_API loupe_status loupe_request_set_int(loupe_request *request, const char *key, int64_t value) {
  loupe_status (*f)(loupe_request *, const char *, int64_t) =
      (loupe_status(*)(loupe_request *, const char *, int64_t))next("loupe_request_set_int");
  char text[32];
  snprintf(text, sizeof text, "%lld", (long long)value);
  if (taken("set_int", key, text)) return LOUPE_OK;
  return f(request, key, value);
}

LOUPE_API loupe_status loupe_request_set_float(loupe_request *request, const char *key, double value) {
  loupe_status (*f)(loupe_request *, const char *, double) =
      (loupe_status(*)(loupe_request *, const char *, double))next("loupe_request_set_float");
  char text[32];
  snprintf(text, sizeof text, "%g", value);
  if (taken("set_float", key, text)) return LOUPE_OK;
  return f(request, key, value);
}
