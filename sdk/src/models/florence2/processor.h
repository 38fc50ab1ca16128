// Florence-2 pre- and post-processing: task prompts, region quantisation, and parsing of the
// generated text (<loc_N> tokens) back into boxes, polygons and quadrilaterals in image pixels,
// following the rules of transformers' Florence2Processor / Florence2PostProcessor.
#pragma once
#include <string>
#include <vector>

#include "core/types.h"

namespace loupe::florence2 {

struct TaskSpec {
  const char* abi_task;   // Loupe task name
  const char* token;      // Florence-2 task token
  const char* prompt;     // prompt text; "{input}" is replaced by the text or region
  const char* parse;      // post-processing type
  enum Input { None, Text, Region } input;
};

const std::vector<TaskSpec>& tasks();
const TaskSpec* find_task(const std::string& abi_task);

// The prompt for a task; region in pixels (quantised to <loc_> bins of the image size).
std::string build_prompt(const TaskSpec& t, const std::string& text, const std::array<float, 4>* region, int width,
                         int height);

// Phrases dropped from grounding results (processor_config.json: post_processor_config.
// phrase_grounding.banned_grounding_tokens in the converted checkpoints).
using BannedPhrases = std::vector<std::string>;

// Parses generated text (special tokens included) into `out` for an image of width x height.
void parse(const TaskSpec& t, const std::string& generated, int width, int height, Result& out,
           const BannedPhrases& banned = {});

}  // namespace loupe::florence2
