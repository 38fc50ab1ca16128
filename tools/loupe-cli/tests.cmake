# loupe-cli's help and parameters come from the library's task description (included from
# tools/CMakeLists.txt, inside its LOUPE_BUILD_TESTS block: loupe_test, ${needs} and the fixture
# folders are defined there). The expressions are matched against the whole output; "." also
# matches a newline, so "a.*b" checks an order. With PASS_REGULAR_EXPRESSION CTest ignores the exit
# code: the error tests check the library's message, which is only printed on failure.

# The library's table: tasks by group, each with its inputs; runtime tasks need no model.
loupe_test(NAME tools.cli_tasks COMMAND loupe-cli tasks)
set_tests_properties(tools.cli_tasks PROPERTIES PASS_REGULAR_EXPRESSION
  "describe\n  caption +--image F .*find\n  detect .*generate\n  txt2img +\\[--prompt TEXT\\] .*edit\n  img2img .*inpaint +--image F --mask F \\[--prompt TEXT\\] .*runtime\n  selftest +\\(no model\\)")
# A model's tasks: only those it offers (the SD fixture offers no Florence-2 task).
loupe_test(NAME tools.cli_tasks_of_a_model COMMAND loupe-cli tasks ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15)
set_tests_properties(tools.cli_tasks_of_a_model PROPERTIES
  PASS_REGULAR_EXPRESSION "tasks of .*tiny-sd15 \\(stable-diffusion, sd15\\).*txt2img.*img2img.*inpaint"
  FAIL_REGULAR_EXPRESSION "caption|detect|selftest")
# The same description as JSON.
loupe_test(NAME tools.cli_tasks_json COMMAND loupe-cli tasks --json)
set_tests_properties(tools.cli_tasks_json PROPERTIES PASS_REGULAR_EXPRESSION
  "\"name\": \"steps\",.*\"type\": \"int\"")

# help TASK: inputs, then every parameter with its type, default, range or choices, unit and help.
loupe_test(NAME tools.cli_help_task COMMAND loupe-cli help inpaint)
set_tests_properties(tools.cli_help_task PROPERTIES PASS_REGULAR_EXPRESSION
  "inpaint: Inpaint - .*--image F +the image \\(required\\).*--mask F +the mask \\(required.*--prompt TEXT +the prompt \\(optional; also --text\\).*steps \\(int\\) +default 20, 1 to 150 steps\n +denoising steps.*guidance_scale \\(float\\) +default 7.5, 0 to 50.*sampler \\(choice\\) +default [a-z_0-9]+; one of: [a-z_0-9, ]*dpmpp_2m_karras.*seed \\(int\\) +default -1, at least -1.*width \\(int\\) +default 0, 0 to 8192 px, step 8.*only_masked \\(bool\\) +default 0.*padding \\(int\\)")
# help TASK MODEL: the defaults and ranges fitted to the model (the tiny SD 1.5 makes 64 px images,
# its text encoder has 3 layers; Florence-2's fixture writes at most 127 tokens).
loupe_test(NAME tools.cli_help_task_of_a_model COMMAND loupe-cli help txt2img ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15)
set_tests_properties(tools.cli_help_task_of_a_model PROPERTIES PASS_REGULAR_EXPRESSION
  "defaults of this model.*width \\(int\\) +default 64, 8 to 8192 px.*clip_skip \\(int\\) +default 1, 1 to 3")
loupe_test(NAME tools.cli_help_task_of_florence2 COMMAND loupe-cli help caption --model ${LOUPE_FIXTURES_DIR}/florence2/tiny)
set_tests_properties(tools.cli_help_task_of_florence2 PROPERTIES PASS_REGULAR_EXPRESSION
  "--image F +the image \\(required\\).*max_new_tokens \\(int\\) +default 127, 1 to 127 tokens")
# An unknown task, or one the model does not offer: the library's message with what there is.
loupe_test(NAME tools.cli_help_unknown_task COMMAND loupe-cli help txt2imgg)
set_tests_properties(tools.cli_help_unknown_task PROPERTIES PASS_REGULAR_EXPRESSION
  "task 'txt2imgg' is not known; tasks: caption, .*txt2img")
loupe_test(NAME tools.cli_task_not_offered COMMAND loupe-cli caption --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15)
set_tests_properties(tools.cli_task_not_offered PROPERTIES PASS_REGULAR_EXPRESSION
  "task 'caption' is not offered by this session; it offers: txt2img, img2img, inpaint")

# --set NAME=VALUE and --NAME VALUE, typed by the description, on the tiny SD 1.5 (2 steps): the
# result reports the seed, steps and sampler it ran with, and the size set.
loupe_test(NAME tools.cli_set_txt2img COMMAND loupe-cli txt2img --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15
  --prompt "a red car" --set steps=2 --set seed=11 --sampler ddim --guidance-scale 3 --set vae_tiling=on
  --width=40 --set negative_prompt=blue)
set_tests_properties(tools.cli_set_txt2img PROPERTIES PASS_REGULAR_EXPRESSION
  "\"height\":64,\"width\":40.*\"seed\":11(\\.0)?,\"steps\":2(\\.0)?.*\"sampler\":\"ddim\".*\"task\":\"txt2img\"")
# ... and on the tiny Florence-2 (parameters of a vision task, the text input under --prompt).
loupe_test(NAME tools.cli_set_florence2 ${needs} COMMAND loupe-cli run --task ground --model ${LOUPE_FIXTURES_DIR}/florence2/tiny
  --image ${LOUPE_FIXTURES_DIR}/images/tiny.ppm --prompt "a car" --set max_new_tokens=6 --num_beams 1 --json)
set_tests_properties(tools.cli_set_florence2 PROPERTIES PASS_REGULAR_EXPRESSION "\"task\":\"ground\"")
# Errors are the library's messages: an unknown key (with the task's parameters), a value out of
# range, not among the choices, a fraction for an integer; a value of the wrong type names the type.
loupe_test(NAME tools.cli_set_unknown_key COMMAND loupe-cli txt2img --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15
  --prompt "a car" --set stepz=2)
set_tests_properties(tools.cli_set_unknown_key PROPERTIES PASS_REGULAR_EXPRESSION
  "task 'txt2img' has no parameter 'stepz'; its parameters: prompt, negative_prompt, steps, ")
loupe_test(NAME tools.cli_set_out_of_range COMMAND loupe-cli txt2img --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15
  --prompt "a car" --steps 1000)
set_tests_properties(tools.cli_set_out_of_range PROPERTIES PASS_REGULAR_EXPRESSION
  "parameter 'steps' = 1000 is out of range \\[1, 150\\] steps")
loupe_test(NAME tools.cli_set_bad_choice COMMAND loupe-cli txt2img --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15
  --prompt "a car" --set sampler=plms)
set_tests_properties(tools.cli_set_bad_choice PROPERTIES PASS_REGULAR_EXPRESSION
  "parameter 'sampler' = 'plms' is not one of: [a-z_0-9, ]*ddim")
loupe_test(NAME tools.cli_set_wrong_type COMMAND loupe-cli txt2img --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15
  --prompt "a car" --set steps=many)
set_tests_properties(tools.cli_set_wrong_type PROPERTIES PASS_REGULAR_EXPRESSION
  "--set steps=many: parameter 'steps' of task 'txt2img' takes an integer \\(default 20, 1 to 150 steps\\)")
loupe_test(NAME tools.cli_set_fraction COMMAND loupe-cli txt2img --model ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15
  --prompt "a car" --set seed=2.5)
set_tests_properties(tools.cli_set_fraction PROPERTIES PASS_REGULAR_EXPRESSION
  "parameter 'seed' = 2.5 must be a whole number")
# A runtime task from the table, with its parameters (no model).
loupe_test(NAME tools.cli_selftest COMMAND loupe-cli selftest --device cpu --set matmul_size=64 --alloc_mib 1)
set_tests_properties(tools.cli_selftest PROPERTIES PASS_REGULAR_EXPRESSION "\"matmul_ok\":1(\\.0)?")

# Edit by words: two sessions (--finder, --painter), the target as --target, the replacement as
# --prompt (a parameter of its own here, not the text input); --out writes the image and the mask.
loupe_test(NAME tools.cli_help_edit COMMAND loupe-cli help edit)
set_tests_properties(tools.cli_help_edit PROPERTIES PASS_REGULAR_EXPRESSION
  "edit: Edit by words - .*usage: loupe-cli edit --finder DIR --painter DIR --image F .*--target TEXT.*two models.*--target TEXT +the target \\(required.*prompt \\(string\\).*grow \\(int\\) +default 8, 0 to 256 px.*feather \\(float\\)")
loupe_test(NAME tools.cli_edit ${needs} COMMAND loupe-cli edit --finder ${LOUPE_FIXTURES_DIR}/florence2/tiny
  --painter ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15-inpaint --image ${LOUPE_FIXTURES_DIR}/images/tiny.ppm
  --target "the red car" --prompt "a blue bicycle" --num_beams 1 --max_new_tokens 48 --steps 2 --seed 3
  --out ${CMAKE_CURRENT_BINARY_DIR}/cli-edit.png --json)
set_tests_properties(tools.cli_edit PROPERTIES PASS_REGULAR_EXPRESSION
  "wrote [^\n]*cli-edit.png.*wrote [^\n]*cli-edit-mask.png.*\"found_by\":\"segment\".*\"mode\":\"replace\".*\"task\":\"edit\"")
loupe_test(NAME tools.cli_edit_nothing_found ${needs} COMMAND loupe-cli edit --finder ${LOUPE_FIXTURES_DIR}/florence2/tiny
  --painter ${LOUPE_FIXTURES_DIR}/sd/tiny-sd15-inpaint --image ${LOUPE_FIXTURES_DIR}/images/tiny.ppm
  --target "the red car" --num_beams 1 --max_new_tokens 2)
set_tests_properties(tools.cli_edit_nothing_found PROPERTIES PASS_REGULAR_EXPRESSION "no 'the red car' found in the image")
