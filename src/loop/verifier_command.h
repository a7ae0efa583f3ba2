// A user's checker program for task answers (`loop.verifier_cmd`, `ouro eval --verifier-cmd`).
//
// Protocol: the program is started once per batch (a loop round, an eval difficulty). It reads
// JSON Lines on stdin, one object per candidate, {"prompt": "...", "sample": "..."} (the sample is
// the model's answer: its text up to the first newline), and writes one score per line on stdout,
// in the same order: a number, where >= 0.5 means correct. Anything else is an error that names
// the command and the line: a non-zero exit, a timeout, a line that is not a number, too few or
// too many lines. The command is split into words (single and double quotes group, backslash
// escapes) and run directly, without a shell, unless `shell` asks for `/bin/sh -c COMMAND`.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "loop/tasks.h"

namespace ouro {

struct VerifierCommand {
  std::string command;      // empty: no command (answers are checked against the task's own)
  bool shell = false;       // run through /bin/sh -c
  double timeout_s = 60.0;  // for the whole batch; then the program is killed

  bool empty() const { return command.empty(); }
};

// The command's words (quotes and backslashes as a shell would treat them, nothing expanded).
std::vector<std::string> split_command(const std::string& command);

// One score per (prompt, sample), from one run of the command.
std::vector<double> run_verifier(const VerifierCommand& v,
                                 const std::vector<std::pair<std::string, std::string>>& prompt_sample);

// 1 correct / 0 wrong / -1 unknown per generated text: by the command when one is given, else by
// the task's answer (-1 where the problem has none).
std::vector<int> verify_answers(const Task& task, const VerifierCommand& v, const std::vector<Problem>& problems,
                                const std::vector<std::string>& generated);

}  // namespace ouro
