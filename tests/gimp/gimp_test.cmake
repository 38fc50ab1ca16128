# One GIMP plug-in test (cmake -P; CMakeLists.txt passes CASE, GIMP, PLUGIN, EXPECT, SCRIPT, IMAGE,
# FIXTURES, WORK). It installs the plug-in into a fresh GIMP profile under WORK, runs the Script-Fu
# case of loupe-test.scm in gimp-console (batch), reads the saved XCFs back in a second gimp-console
# (loupe-check), and compares what is in them with what the SDK returns for the same pixels
# (loupe-gimp-expect on the PPM that GIMP exported).
cmake_minimum_required(VERSION 3.22)

set(OUT ${WORK}/out)
set(FLORENCE ${FIXTURES}/florence2/tiny)
set(SD ${FIXTURES}/sd/tiny-sd15)
set(SD_INPAINT ${FIXTURES}/sd/tiny-sd15-inpaint)
set(FLORENCE_ORIGINAL ${FIXTURES}/florence2/tiny-original)
set(failures "")
if(NOT GIMP_TIMEOUT) # seconds for one GIMP run or one loupe-gimp-expect (CMakeLists.txt sets it per case)
  set(GIMP_TIMEOUT 100)
endif()

function(expect_eq what actual expected)
  if(NOT actual STREQUAL expected)
    set(failures "${failures}\n  ${what}:\n    got:      [${actual}]\n    expected: [${expected}]" PARENT_SCOPE)
  endif()
endfunction()

function(expect_match what actual regex)
  if(NOT actual MATCHES "${regex}")
    set(failures "${failures}\n  ${what}:\n    got:      [${actual}]\n    expected to match: ${regex}" PARENT_SCOPE)
  endif()
endfunction()

function(fact var name)
  if(NOT EXISTS ${OUT}/${name})
    message(FATAL_ERROR "gimp.${CASE}: ${name} was not written (see the logs in ${WORK})")
  endif()
  file(READ ${OUT}/${name} text)
  set(${var} "${text}" PARENT_SCOPE)
endfunction()

# Runs the case's Script-Fu expression in gimp-console. fonts: ON loads fonts (text layers);
# GUI: the whole GIMP under Xvfb instead.
function(run_gimp label expr fonts)
  set(flags -i -d)
  set(gimp ${GIMP})
  if(fonts STREQUAL "GUI")
    set(gimp ${XVFB_RUN} -a -s "-screen 0 1280x1024x24" ${GIMP_GUI} --no-splash)
    set(flags -d)
  elseif(NOT fonts)
    list(APPEND flags -f)
  endif()
  execute_process(COMMAND ${gimp} ${flags} -b "(begin (load \"${SCRIPT}\") ${expr})" -b "(gimp-quit 1)"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${GIMP_TIMEOUT})
  file(WRITE ${WORK}/${label}.log "${out}\n${err}")
  if(NOT rc EQUAL 0 OR "${out}${err}" MATCHES "experienced an execution error")
    message(FATAL_ERROR "gimp.${CASE}: gimp-console (${label}) failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

# What the SDK says for a PPM exported by GIMP: files in ${OUT}/expect-<name>/.
function(run_expect name task ppm)
  file(MAKE_DIRECTORY ${OUT}/expect-${name})
  execute_process(COMMAND ${EXPECT} ${FLORENCE} ${task} ${OUT}/${ppm} ${OUT}/expect-${name} ${ARGN}
    RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT ${GIMP_TIMEOUT})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gimp.${CASE}: loupe-gimp-expect ${task} ${ppm} failed (${rc}): ${err}")
  endif()
endfunction()

# The Stable Diffusion fixtures must be there and be recognised by the SDK; otherwise the case fails
# (it never skips), with what loupe_model_inspect said.
function(require_sd path)
  if(NOT EXISTS ${path})
    message(FATAL_ERROR "gimp.${CASE}: the fixture ${path} is missing (tests/fixtures/gen/make_sd_tiny.py makes it)")
  endif()
  execute_process(COMMAND ${EXPECT} --inspect ${path} OUTPUT_VARIABLE json ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gimp.${CASE}: the SDK cannot inspect ${path} (loupe-gimp-expect --inspect, exit ${rc}): ${err}")
  endif()
  string(JSON family ERROR_VARIABLE json_err GET "${json}" family)
  if(json_err)  # json_err is NOTFOUND (false) when there is a family
    set(family "none")
  endif()
  if(NOT family STREQUAL "stable-diffusion")
    message(FATAL_ERROR "gimp.${CASE}: the SDK does not recognise ${path} as a stable-diffusion model "
      "(family: ${family}); loupe_model_inspect says:\n${json}")
  endif()
endfunction()

# Generating, inpainting and the dialogs (Inpaint and Generate among them) need the tiny SD fixtures.
if(CASE STREQUAL "generate" OR CASE STREQUAL "interactive" OR CASE STREQUAL "dialogs")
  require_sd(${SD})
elseif(CASE STREQUAL "inpaint" OR CASE STREQUAL "edit")
  require_sd(${SD})
  require_sd(${SD_INPAINT})
endif()

# A fresh GIMP profile with the plug-in installed, and a home without Loupe settings.
file(REMOVE_RECURSE ${WORK})
foreach(dir out home config models profile/plug-ins/loupe-gimp profile/brushes profile/gradients
            profile/patterns profile/palettes)
  file(MAKE_DIRECTORY ${WORK}/${dir})
endforeach()
file(COPY ${PLUGIN} DESTINATION ${WORK}/profile/plug-ins/loupe-gimp)
set(ENV{GIMP2_DIRECTORY} ${WORK}/profile)
set(ENV{HOME} ${WORK}/home)
set(ENV{XDG_CONFIG_HOME} ${WORK}/config)
set(ENV{LOUPE_MODELS_DIR} ${WORK}/models)
set(ENV{LOUPE_FLORENCE_MODEL} ${FLORENCE})
set(ENV{LOUPE_SD_MODEL} ${SD})
unset(ENV{LOUPE_SD_INPAINT_MODEL})
# OpenMP threads wait without spinning: on a busy 2-core machine, spinning made one tiny caption take
# 55 s instead of 1 s (GIMP, the plug-in and loupe-gimp-expect all inherit this).
set(ENV{OMP_WAIT_POLICY} passive)

string(REPLACE "_" "-" scheme_case "${CASE}")
set(run "(loupe-case-${scheme_case} \"${IMAGE}\" \"${OUT}\")")
set(fonts OFF)

if(CASE STREQUAL "caption")
  # The model comes from the editor's settings file (QSettings INI), not from the environment.
  unset(ENV{LOUPE_FLORENCE_MODEL})
  unset(ENV{LOUPE_MODELS_DIR})
  file(WRITE "${WORK}/config/Loupe/Loupe Editor.conf"
       "[General]\nwindowState=@ByteArray(\\0\\0)\n\n[loupe]\ndevice=cpu\nlastModel=${FLORENCE}\n"
       "modelsDir=\"${WORK}/my models\"\nprecision=auto\n")
  set(fonts ON) # the text layer needs fonts
elseif(CASE STREQUAL "detect")
  # The model is found by looking through the models folder.
  unset(ENV{LOUPE_FLORENCE_MODEL})
  file(WRITE ${WORK}/models/README.txt "not a model\n")
  file(CREATE_LINK ${FLORENCE} ${WORK}/models/florence-2-tiny SYMBOLIC)
elseif(CASE STREQUAL "interactive")
  set(ENV{LOUPE_GIMP_AUTO_OK} 300)
  set(fonts GUI)
elseif(CASE STREQUAL "inpaint" OR CASE STREQUAL "edit")
  set(ENV{LOUPE_SD_INPAINT_MODEL} ${SD_INPAINT})
elseif(CASE STREQUAL "dialogs")
  # The dialogs as the task descriptions make them: every row dumped (LOUPE_GIMP_DIALOG_DUMP); a
  # parameter added to the SDK's table by a preloaded library (extra_param.c, also seen by
  # loupe-gimp-expect); the models a scan finds, here a Florence-2 in a Hugging Face cache under a
  # catalog repo (the remote-code fixture, another folder than LOUPE_FLORENCE_MODEL's).
  set(ENV{LOUPE_GIMP_AUTO_OK} 300)
  set(ENV{LOUPE_GIMP_DIALOG_DUMP} ${OUT})
  set(ENV{LOUPE_TEST_EXTRA_LOG} ${OUT}/extra.log)
  set(ENV{LD_PRELOAD} ${SHIM})
  set(hub ${WORK}/home/.cache/huggingface/hub)
  set(ENV{HF_HUB_CACHE} ${hub})
  file(MAKE_DIRECTORY ${hub}/models--microsoft--Florence-2-base/snapshots ${hub}/models--microsoft--Florence-2-base/refs)
  file(WRITE ${hub}/models--microsoft--Florence-2-base/refs/main "0123456789abcdef")
  set(snapshot ${hub}/models--microsoft--Florence-2-base/snapshots/0123456789abcdef)
  file(CREATE_LINK ${FLORENCE_ORIGINAL} ${snapshot} SYMBOLIC)
  set(fonts GUI)
endif()

run_gimp(case "${run}" ${fonts})
if(NOT EXISTS ${OUT}/done.txt)
  message(FATAL_ERROR "gimp.${CASE}: the Script-Fu case did not finish (see ${WORK}/case.log)")
endif()
run_gimp(check "(loupe-check \"${OUT}\")" OFF)

if(CASE STREQUAL "caption")
  run_expect(caption caption caption.ppm)
  fact(expected expect-caption/comment.txt)
  fact(comment caption.comment.txt)
  fact(returned returned.txt)
  fact(same same.txt)
  fact(loads loads.txt)
  fact(layers caption.layers.txt)
  fact(info info.txt)
  string(JSON models_dir ERROR_VARIABLE err GET "${info}" diagnostics runtime models_dir)
  string(JSON session ERROR_VARIABLE err GET "${info}" sessions 0)
  expect_eq("the models folder from the settings file" "${models_dir}" "${WORK}/my models")
  expect_eq("the model from the settings file (lastModel)" "${session}" "${FLORENCE}")
  expect_eq("the image comment is the SDK's caption" "${comment}" "${expected}")
  expect_eq("the procedure returns the caption" "${returned}" "${expected}")
  expect_eq("a second call gives the same caption" "${same}" "same")
  expect_eq("models loaded for two calls (the second must reuse the session)" "${loads}" "1")
  expect_match("a text layer above the layer" "${layers}" "^[^\n]*\\|1\nBackground\\|768\\|512\\|0\\|0\\|0\n$")
elseif(CASE STREQUAL "detect")
  run_expect(detect detect detect.ppm)
  fact(expected expect-detect/paths.txt)
  fact(paths detect.paths.txt)
  fact(count count.txt)
  # GIMP makes names unique with " #N"; the plug-in names paths by their labels.
  string(REGEX REPLACE " #[0-9]+\n" "\n" paths "${paths}")
  string(REGEX MATCHALL "\n" lines "${expected}")
  list(LENGTH lines n)
  if(n EQUAL 0)
    message(FATAL_ERROR "gimp.detect: the fixture gives no boxes; this test needs an input with some")
  endif()
  expect_eq("one path per box, named by its label, in order" "${paths}" "${expected}")
  expect_eq("the procedure returns the number of paths" "${count}" "${n}")
elseif(CASE STREQUAL "select")
  foreach(kind ground segment)
    run_expect(${kind} ${kind} select.ppm "a red circle")
    fact(regions expect-${kind}/regions.txt)
    fact(bounds expect-${kind}/bounds.txt)
    fact(count ${kind}-count.txt)
    fact(selection ${kind}.selection.txt)
    if(regions EQUAL 0)
      message(FATAL_ERROR "gimp.select: the fixture gives no ${kind} regions; this test needs an input with some")
    endif()
    expect_eq("${kind}: regions in the selection" "${count}" "${regions}")
    # The new selection replaced the 5x5 one and covers the regions' union (antialiasing: +-1 px).
    string(REPLACE " " ";" got "${selection}")
    string(REPLACE " " ";" want "${bounds}")
    list(GET got 0 non_empty)
    expect_eq("${kind}: the selection is not empty" "${non_empty}" "1")
    foreach(i 0 1 2 3)
      math(EXPR j "${i} + 1")
      list(GET got ${j} g)
      list(GET want ${i} w)
      math(EXPR d "${g} - ${w}")
      if(d GREATER 1 OR d LESS -1)
        expect_eq("${kind}: selection bounds (x1 y1 x2 y2)" "${selection}" "1 ${bounds}")
        break()
      endif()
    endforeach()
  endforeach()
elseif(CASE STREQUAL "modes")
  foreach(variant gray indexed u16 float alpha)
    run_expect(${variant} caption ${variant}.ppm)
    fact(expected expect-${variant}/comment.txt)
    fact(comment ${variant}.comment.txt)
    fact(before ${variant}.before.txt)
    fact(after ${variant}.mode.txt)
    expect_eq("${variant}: caption of GIMP's own 8-bit RGB conversion" "${comment}" "${expected}")
    expect_eq("${variant}: image mode and precision unchanged" "${after}" "${before}")
  endforeach()
elseif(CASE STREQUAL "bad_input")
  foreach(pair "no-selection;needs a selection" "selection-outside;does not cover any part of this layer"
               "channel;works on a layer" "empty-text;needs a description" "bad-detail;detail must be 0, 1 or 2")
    list(GET pair 0 name)
    list(GET pair 1 text)
    fact(message ${name}.txt)
    expect_match("${name}: the error says why" "${message}" "${text}")
  endforeach()
  fact(before before.txt)
  fact(after bad.mode.txt)
  fact(paths bad.paths.txt)
  fact(comment bad.comment.txt)
  fact(layers bad.layers.txt)
  expect_eq("image mode unchanged" "${after}" "${before}")
  expect_eq("no paths added" "${paths}" "")
  expect_eq("no comment added" "${comment}" "")
  expect_eq("no layer added" "${layers}" "small|40|40|0|0|0\nBackground|768|512|0|0|0\n")
elseif(CASE STREQUAL "interactive")
  run_expect(caption caption interactive.ppm)
  run_expect(detect detect interactive.ppm)
  run_expect(ground ground interactive.ppm "a red circle")
  fact(expected expect-caption/comment.txt)
  fact(comment interactive.comment.txt)
  fact(returned returned.txt)
  fact(repeat repeat.txt)
  fact(paths expect-detect/paths.txt)
  fact(count count.txt)
  fact(regions expect-ground/regions.txt)
  fact(ground ground-count.txt)
  fact(layers interactive.layers.txt)
  fact(loads loads.txt)
  string(REGEX REPLACE " #[0-9]+\\|" "|" layers "${layers}") # GIMP's unique names
  string(REGEX MATCHALL "\n" lines "${paths}")
  list(LENGTH lines n)
  expect_eq("caption dialog: the comment" "${comment}" "${expected}")
  expect_eq("caption dialog: the returned caption" "${returned}" "${expected}")
  expect_eq("caption with last values" "${repeat}" "${expected}")
  expect_eq("detect dialog: paths" "${count}" "${n}")
  expect_eq("select dialog (last values): regions" "${ground}" "${regions}")
  expect_eq("inpaint and generate dialogs: new layers"  "${layers}"
    "Loupe inpaint: a cat|768|512|0|0|0\nLoupe inpaint: a cat|768|512|0|0|0\nLoupe generate: a dog|64|64|0|0|0\nLoupe generate: a dog|64|64|0|0|0\nBackground|768|512|0|0|0\n")
  expect_eq("models loaded (Florence-2 and Stable Diffusion, once each)" "${loads}" "2")
elseif(CASE STREQUAL "generate")
  fact(layers generate.layers.txt)
  fact(seed seed.txt)
  expect_eq("the seed given is the seed used" "${seed}" "42")
  fact(empty empty-prompt.txt)
  expect_eq("an empty prompt generates (unconditionally), with the seed given" "${empty}" "7")
  expect_eq("a 64x48 layer on top, and the unconditional one below it" "${layers}"
            "Loupe generate: a red square|64|48|0|0|0\nLoupe generate|64|48|0|0|0\nBackground|768|512|0|0|0\n")
elseif(CASE STREQUAL "dialogs")
  # Each dialog's parameter rows, read back from its widgets, are the task's parameters as a session
  # of the same model describes them (loupe_task_param through loupe-gimp-expect --rows).
  foreach(case "caption;caption;${FLORENCE}" "detect;detect;${FLORENCE}" "select;ground;${FLORENCE}"
               "inpaint;inpaint;${SD}" "generate;txt2img;${SD}")
    list(GET case 0 proc)
    list(GET case 1 task)
    list(GET case 2 model)
    execute_process(COMMAND ${EXPECT} --rows ${model} ${task} OUTPUT_VARIABLE expected ERROR_VARIABLE err
      RESULT_VARIABLE rc TIMEOUT 60)
    if(NOT rc EQUAL 0 OR expected STREQUAL "")
      message(FATAL_ERROR "gimp.dialogs: loupe-gimp-expect --rows ${model} ${task} failed (${rc}): ${err}")
    endif()
    fact(rows plug-in-loupe-${proc}.${task}.rows.txt)
    expect_eq("${proc} dialog: one row per parameter of '${task}', as described" "${rows}" "${expected}")
  endforeach()
  # The parameter the preloaded library added: a row of Detect's dialog, and sent by its type.
  fact(rows plug-in-loupe-detect.detect.rows.txt)
  expect_match("the added parameter is a row of the dialog" "${rows}"
    "\nloupe_test_style\\|choice\\|GtkComboBoxText\\|Style\\|a parameter the test added to the task table\\|\\|fancy\\|\\|\\|\\|0\\|plain,fancy\n$")
  # What the dialogs sent, by type (the preloaded library logs every loupe_request_set_*): Detect's
  # rows, the added one among them; then Caption's after the rebuilds, with the changed value.
  fact(sent extra.log)
  expect_eq("the dialogs send every row by its type, the added parameter too" "${sent}"
    "set_int max_new_tokens=127\nset_int num_beams=3\nset_int no_repeat_ngram_size=3\nset_string loupe_test_style=fancy\nset_int max_new_tokens=20\nset_int num_beams=3\nset_int no_repeat_ngram_size=3\n")
  # Another task, a changed parameter, another model: rebuilt each time, the change kept.
  fact(rebuilt rebuilt.txt)
  expect_eq("caption after choosing another task and model" "${rebuilt}" "no error")
  fact(rows plug-in-loupe-caption.detailed_caption.rows.txt)
  expect_match("the changed parameter survives the rebuilds" "${rows}" "^max_new_tokens\\|int\\|GtkSpinButton\\|[^\n]*\\|tokens\\|20\\|")
  fact(count count.txt)
  expect_match("Detect with the added parameter runs" "${count}" "^[0-9]+$")
  # Dialogs answered Cancel change nothing (Caption, Inpaint, Generate).
  fact(cancel cancel.txt)
  fact(comment dialogs.comment.txt)
  fact(layers dialogs.layers.txt)
  expect_eq("a cancelled dialog is not an error for scripts" "${cancel}" "no error")
  expect_eq("cancelled caption: no comment" "${comment}" "")
  expect_eq("cancelled inpaint and generate: no layer" "${layers}" "Background|768|512|0|0|0\n")
  # Advanced parameters fold away; the diffusion ones are there with their types.
  fact(rows plug-in-loupe-generate.txt2img.rows.txt)
  expect_match("generate: the sampler is a combo box" "${rows}" "(^|\n)sampler\\|choice\\|GtkComboBoxText\\|")
  expect_match("generate: batch_count is advanced" "${rows}" "(^|\n)batch_count\\|int\\|GtkSpinButton\\|[^\n]*\\|1\\|\n")
  # The model choice: the model the plug-in's own rules find (LOUPE_FLORENCE_MODEL, chosen unless the
  # person chooses another), and the one loupe_models_scan found, named by its catalog entry.
  get_filename_component(florence_name ${FLORENCE} NAME)
  fact(fields plug-in-loupe-detect.fields.txt)
  expect_match("detect: the model the plug-in's rules find is chosen" "${fields}"
    "(^|\n)model\\|${florence_name} \\(LOUPE_FLORENCE_MODEL\\)\\|${FLORENCE}\\|active\n")
  expect_match("detect: the scanned model, by its catalog name" "${fields}"
    "(^|\n)model\\|Florence-2 base \\(0.23B\\) \\(microsoft/Florence-2-base, Hugging Face cache\\)\\|${snapshot}\\|\n")
  fact(fields plug-in-loupe-caption.fields.txt) # after the rebuilds
  expect_match("caption: the model the plug-in's rules find is listed" "${fields}"
    "(^|\n)model\\|${florence_name} \\(LOUPE_FLORENCE_MODEL\\)\\|${FLORENCE}\\|\n")
  expect_match("caption: the scanned model was chosen" "${fields}"
    "(^|\n)model\\|Florence-2 base \\(0.23B\\) \\(microsoft/Florence-2-base, Hugging Face cache\\)\\|${snapshot}\\|active\n")
  expect_match("caption: the detail choice lists the caption tasks by their labels" "${fields}"
    "(^|\n)field\\|detail\\|1\\|Caption,Detailed caption,More detailed caption\n")
  # A text the task needs keeps OK off while empty; the empty prompt of txt2img does not.
  fact(fields plug-in-loupe-select.fields.txt)
  expect_match("select: the text is required" "${fields}" "(^|\n)text\\|text\\|Select\\|[^\n]*\\|\\|required\nok\\|0\n")
  fact(fields plug-in-loupe-generate.fields.txt)
  expect_match("generate: the empty prompt is allowed" "${fields}" "(^|\n)text\\|prompt\\|Prompt\\|[^\n]*\\|\\|optional\nok\\|1\n")
elseif(CASE STREQUAL "inpaint")
  fact(layers inpaint.layers.txt)
  fact(outside outside.txt)
  fact(inside inside.txt)
  expect_eq("the new layer keeps the pixels far outside the selection" "${outside}" "same")
  expect_eq("the new layer is repainted inside the selection" "${inside}" "different")
  expect_eq("a layer of the layer's size above it" "${layers}"
            "Loupe inpaint: a blue ball|768|512|0|0|0\nBackground|768|512|0|0|0\n")
elseif(CASE STREQUAL "edit")
  # Edit by words on the tiny Florence-2 (finder) and SD 1.5 inpainting (painter): something found,
  # one new layer above the layer, named by the target; an empty target is refused.
  fact(layers edit.layers.txt)
  fact(regions regions.txt)
  fact(empty empty-target.txt)
  expect_match("the finder found regions" "${regions}" "^[1-9][0-9]*$")
  expect_eq("a layer of the layer's size above it" "${layers}"
            "Loupe edit: the red car|768|512|0|0|0\nBackground|768|512|0|0|0\n")
  expect_match("an empty target is refused" "${empty}" "needs a description of what to change")
endif()

if(failures)
  message(FATAL_ERROR "gimp.${CASE} failed:${failures}\n(work folder: ${WORK})")
endif()
message(STATUS "gimp.${CASE}: ok")
