// User tasks (issue 20, deliverable 3): prompts from a JSONL task file and a checker program that
// judges samples (loop/task_file.h, loop/verifier_command.h), end to end through `ouro train`
// (loop.task = "file") and `ouro eval --task file` with examples/user_task/check.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "loop/task_file.h"
#include "loop/tasks.h"
#include "loop/verifier_command.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "test_support.h"

using namespace ouro;
namespace fs = std::filesystem;

namespace {

class UserTask : public ouro::test::ScratchDirTest {
 protected:
  void SetUp() override { make_dir("ouro_test_user_task_"); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return dir / name;
  }
  // A shell script as a checker program (the protocol tests need no Python).
  std::string script(const std::string& name, const std::string& body) {
    const fs::path p = write(name, "#!/bin/sh\n" + body);
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  }
  // The error message of `fn`, or "" when it does not throw.
  template <class F>
  static std::string error_of(F&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
};

}  // namespace

TEST_F(UserTask, TaskFileGivesEveryPromptOfADifficultyOnceFromASeededOffset) {
  const auto f = write("p.jsonl",
                       "{\"prompt\": \"a=\", \"answer\": \"1\"}\n"
                       "\n"
                       "{\"prompt\": \"bb=\", \"answer\": \"22\", \"difficulty\": 2}\n"
                       "{\"prompt\": \"cc=\", \"difficulty\": 2}\n"
                       "{\"prompt\": \"dd=\", \"answer\": \"4444\", \"difficulty\": 2}\n");
  auto t = make_task("file", f.string());
  EXPECT_EQ(t->name(), "file");
  EXPECT_EQ(t->count(1), 1);
  EXPECT_EQ(t->count(2), 3);
  EXPECT_EQ(t->count(3), 0);
  for (uint64_t seed : {1u, 2u, 77u}) {
    std::set<std::string> seen;
    for (uint64_t i = 0; i < 3; ++i) seen.insert(t->make(2, seed, i).prompt);
    EXPECT_EQ(seen, (std::set<std::string>{"bb=", "cc=", "dd="})) << "seed " << seed;
    EXPECT_EQ(t->make(2, seed, 5).prompt, t->make(2, seed, 2).prompt);  // wraps around
  }
  const Problem a = t->make(1, 9, 0);
  EXPECT_TRUE(a.answer_known);
  EXPECT_EQ(a.answer, "1");
  EXPECT_EQ(a.difficulty, 1);
  Problem c;
  for (uint64_t i = 0; i < 3; ++i)
    if (t->make(2, 1, i).prompt == "cc=") c = t->make(2, 1, i);
  EXPECT_FALSE(c.answer_known);
  // Answers check exactly; plausible: non-empty, within the lengths of the difficulty's answers.
  EXPECT_TRUE(t->verify(a, "1\nmore"));
  EXPECT_FALSE(t->verify(a, "12"));
  EXPECT_TRUE(t->plausible(c, "123"));
  EXPECT_FALSE(t->plausible(c, "1"));
  EXPECT_FALSE(t->plausible(c, "12345"));
  EXPECT_FALSE(t->plausible(c, "\n"));
  EXPECT_NE(error_of([&] { t->make(3, 1, 0); }).find("no prompt of difficulty 3 (it has 1..2)"), std::string::npos);
}

TEST_F(UserTask, MalformedTaskFilesAreErrorsNamingFileAndLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"{\"prompt\": \"a=\"}\n{\"prompt\": \"b=\"\n", "line 2: not a JSON object"},
      {"{\"prompt\": \"a=\"}\n[1, 2]\n", "line 2: not a JSON object"},
      {"{\"answer\": \"1\"}\n", "line 1: needs \"prompt\", a non-empty string"},
      {"{\"prompt\": \"\"}\n", "line 1: needs \"prompt\""},
      {"{\"prompt\": \"a=\", \"difficulty\": 0}\n", "line 1: \"difficulty\" must be an integer in 1..1000000"},
      {"{\"prompt\": \"a=\", \"difficulty\": 1.5}\n", "line 1: \"difficulty\" must be an integer"},
      {"{\"prompt\": \"a=\", \"answer\": 3}\n", "line 1: \"answer\" must be a string"},
      {"{\"prompt\": \"a=\", \"answer\": \"1\\n2\"}\n", "line 1: \"answer\" has a newline"},
      {"{\"prompt\": \"a=\", \"hint\": \"x\"}\n", "line 1: unknown key \"hint\""},
      {"\n\n", "no prompts"},
  };
  for (const auto& [text, want] : cases) {
    const auto f = write("bad.jsonl", text);
    const std::string msg = error_of([&] { make_task("file", f.string()); });
    EXPECT_NE(msg.find(f.string()), std::string::npos) << text << " -> " << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << text << " -> " << msg;
  }
  EXPECT_NE(error_of([&] { make_task("file", (dir / "missing.jsonl").string()); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_task("file"); }).find("needs a task file"), std::string::npos);
  EXPECT_NE(error_of([&] { make_task("add", "x.jsonl"); }).find("is for task 'file'"), std::string::npos);
}

TEST_F(UserTask, CommandsSplitLikeAShellWithoutExpanding) {
  EXPECT_EQ(split_command("python3  check.py --x 1"),
            (std::vector<std::string>{"python3", "check.py", "--x", "1"}));
  EXPECT_EQ(split_command("a 'b c' \"d \\\"e\\\"\" f\\ g '' $HOME"),
            (std::vector<std::string>{"a", "b c", "d \"e\"", "f g", "", "$HOME"}));
  EXPECT_NE(error_of([] { split_command("a 'b"); }).find("unterminated ' quote"), std::string::npos);
  EXPECT_NE(error_of([] { split_command("   "); }).find("empty"), std::string::npos);
}

TEST_F(UserTask, TheCheckerGetsJsonLinesAndItsScoresComeBackInOrder) {
  // Echoes its input to a file and scores 1 when the sample is "ok".
  const std::string cmd = script("check.sh", "tee '" + (dir / "seen.jsonl").string() +
                                                 "' | while read -r l; do case \"$l\" in *'\"sample\":\"ok\"'*) "
                                                 "echo 1;; *) echo 0.0;; esac; done\n");
  VerifierCommand v{cmd};
  const auto s = run_verifier(v, {{"p1=", "ok"}, {"p\"2\n=", "no"}, {"p3=", "ok"}});
  EXPECT_EQ(s, (std::vector<double>{1, 0, 1}));
  std::ifstream in(dir / "seen.jsonl");
  std::vector<nlohmann::json> seen;
  for (std::string l; std::getline(in, l);) seen.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1]["prompt"], "p\"2\n=");
  EXPECT_EQ(seen[1]["sample"], "no");
  // No candidates: the program is not started (it would fail here).
  EXPECT_TRUE(run_verifier(VerifierCommand{script("fail.sh", "exit 1\n")}, {}).empty());
}

TEST_F(UserTask, CheckerFailuresAreErrorsNamingTheCommandAndLine) {
  auto msg = [&](const std::string& body, double timeout = 30) {
    VerifierCommand v{script("c.sh", body), false, timeout};
    return error_of([&] { run_verifier(v, {{"a=", "1"}, {"b=", "2"}}); });
  };
  std::string m = msg("cat > /dev/null; echo 'bad input' >&2; exit 3\n");
  EXPECT_NE(m.find("c.sh"), std::string::npos) << m;
  EXPECT_NE(m.find("exited with status 3"), std::string::npos) << m;
  EXPECT_NE(m.find("bad input"), std::string::npos) << m;
  m = msg("cat > /dev/null; echo 1; echo yes\n");
  EXPECT_NE(m.find("output line 2: 'yes' is not a score"), std::string::npos) << m;
  m = msg("cat > /dev/null; echo 1\n");
  EXPECT_NE(m.find("wrote 1 score lines for 2 samples"), std::string::npos) << m;
  m = msg("cat > /dev/null; echo 1; echo 1; echo 1\n");
  EXPECT_NE(m.find("wrote 3 score lines for 2 samples"), std::string::npos) << m;
  m = msg("sleep 30\n", 0.3);
  EXPECT_NE(m.find("no result within 0.3 s"), std::string::npos) << m;
  // Outputs closed, still running: the deadline covers its exit as well.
  m = msg("cat > /dev/null; exec >&- 2>&-; sleep 30\n", 0.3);
  EXPECT_NE(m.find("no result within 0.3 s"), std::string::npos) << m;
  m = msg("kill -9 $$\n");
  EXPECT_NE(m.find("killed by signal 9"), std::string::npos) << m;
  // A program that exits without reading its input (the write side sees EPIPE, not SIGPIPE).
  std::vector<std::pair<std::string, std::string>> many(20000, {"a=", std::string(100, 'x')});
  VerifierCommand early{script("early.sh", "exit 0\n")};
  m = error_of([&] { run_verifier(early, many); });
  EXPECT_NE(m.find("wrote 0 score lines for 20000 samples"), std::string::npos) << m;
  VerifierCommand missing{"/nonexistent/checker --x"};
  m = error_of([&] { run_verifier(missing, {{"a=", "1"}}); });
  EXPECT_NE(m.find("cannot start '/nonexistent/checker'"), std::string::npos) << m;
}

TEST_F(UserTask, NoShellUnlessAskedFor) {
  // The same command line: without a shell `$X` and `;` are plain arguments.
  const std::string echo = script("args.sh", "cat > /dev/null; for a in \"$@\"; do echo \"$a\" >> '" +
                                                 (dir / "args.txt").string() + "'; done; echo 1\n");
  VerifierCommand plain{echo + " '$HOME' ';'"};
  EXPECT_EQ(run_verifier(plain, {{"a=", "1"}}), std::vector<double>{1});
  EXPECT_EQ(ouro::test::read_file(dir / "args.txt"), "$HOME\n;\n");
  VerifierCommand shell{"cat > /dev/null; echo 0.75", true};
  EXPECT_EQ(run_verifier(shell, {{"a=", "1"}}), std::vector<double>{0.75});
}

TEST_F(UserTask, VerdictsComeFromTheCheckerOrElseFromTheAnswers) {
  const auto f = write("p.jsonl", "{\"prompt\": \"x=\", \"answer\": \"7\"}\n{\"prompt\": \"y=\"}\n");
  auto t = make_task("file", f.string());
  std::vector<Problem> probs = {t->make(1, 0, 0), t->make(1, 0, 1)};
  if (probs[0].prompt != "x=") std::swap(probs[0], probs[1]);
  EXPECT_EQ(verify_answers(*t, {}, probs, {"7\n", "7"}), (std::vector<int>{1, -1}));
  EXPECT_EQ(verify_answers(*t, {}, probs, {"8", "7"}), (std::vector<int>{0, -1}));
  // The checker sees the answer (text before the first newline) and its 0.5 threshold decides.
  const std::string cmd = script("half.sh", "tee '" + (dir / "in.jsonl").string() + "' > /dev/null; echo 0.5; echo 0.49\n");
  EXPECT_EQ(verify_answers(*t, VerifierCommand{cmd}, probs, {"8\nrest", "9"}), (std::vector<int>{1, 0}));
  EXPECT_NE(ouro::test::read_file(dir / "in.jsonl").find("\"sample\":\"8\"}"), std::string::npos);
}

// The worked example of docs/experiments.md on a tiny model: prompts made by
// examples/user_task/make_prompts.py, judged by examples/user_task/check.py, through a loop round
// and through `ouro eval --task file`.
TEST_F(UserTask, LoopRoundAndEvalWithThePythonCheckerExample) {
  const fs::path ex = fs::path(OURO_FIXTURES).parent_path().parent_path() / "examples/user_task";
  auto sh = [&](const std::string& cmd, const std::string& log) { return ouro::test::run_shell(cmd, dir / log); };
  auto r = sh("python3 " + (ex / "make_prompts.py").string() + " --count 40 --max-ops 2 --answers --out " +
                  (dir / "train.jsonl").string(),
              "p1.log");
  ASSERT_EQ(r.code, 0) << r.out;
  r = sh("python3 " + (ex / "make_prompts.py").string() + " --count 20 --max-ops 2 --seed 2 --out " +
             (dir / "prompts.jsonl").string(),
         "p2.log");
  ASSERT_EQ(r.code, 0) << r.out;
  // Training documents from the answered prompts.
  r = sh(std::string(OURO_BIN) + " prepare --task file --task-file " + (dir / "train.jsonl").string() +
             " --count 2000 --min 1 --max 2 --out " + (dir / "arith").string(),
         "prep.log");
  ASSERT_EQ(r.code, 0) << r.out;
  // An unanswered prompt cannot be a training document.
  auto bad = sh(std::string(OURO_BIN) + " prepare --task file --task-file " + (dir / "prompts.jsonl").string() +
                    " --count 10 --out " + (dir / "x").string(),
                "bad.log");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("has no answer"), std::string::npos) << bad.out;

  const std::string check = "python3 " + (ex / "check.py").string();
  std::ofstream(dir / "cfg.toml")
      << "[model]\nn_layer = 1\nn_head = 2\nn_embd = 32\nseq_len = 32\nvocab_size = 257\n"
         "[train]\nsteps = 12\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 2\neval_every = 0\neval_batches = 2\n"
         "[data]\ntrain = \"" + (dir / "arith_train.bin").string() + "\"\nval = \"" +
             (dir / "arith_val.bin").string() +
             "\"\n[run]\nthreads = 2\n[checkpoint]\nevery = 1\nkeep = 0\n"
             "[loop]\nrounds = 1\nstart_step = 4\nround_steps = 4\nprompts = 6\nk = 2\nmax_new_tokens = 4\n"
             "task = \"file\"\ntask_file = \"" + (dir / "prompts.jsonl").string() + "\"\ntask_min = 1\ntask_max = 2\n"
             "verifier_cmd = \"" + check + "\"\nscorer = \"verifier\"\nguard_tolerance = 10.0\n";
  r = sh(std::string(OURO_BIN) + " train --config " + (dir / "cfg.toml").string() + " --set run.out_dir=" +
             (dir / "run").string(),
         "train.log");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream rounds(dir / "run/rounds.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(rounds, line));
  const auto rec = nlohmann::json::parse(line);
  EXPECT_EQ(rec["generated"], 12);
  EXPECT_TRUE(rec.contains("task_accuracy"));
  // The verifier scorer keeps only what the checker called correct.
  std::ifstream samples(dir / "run/samples.jsonl");
  int n = 0;
  for (std::string s; std::getline(samples, s); ++n) {
    const auto j = nlohmann::json::parse(s);
    if (j.contains("verified") && j.value("accepted", false)) EXPECT_EQ(j["verified"], 1) << s;
  }
  EXPECT_GT(n, 0);

  const std::string init = (dir / "run/checkpoints/step_000012").string();
  auto e = sh(std::string(OURO_BIN) + " eval --init " + init + " --task file --task-file " +
                  (dir / "prompts.jsonl").string() + " --verifier-cmd '" + check + "' --problems 5 -k 2 --json",
              "eval.log");
  ASSERT_EQ(e.code, 0) << e.out;
  const auto j = nlohmann::json::parse(e.out.substr(e.out.find("{\"greedy")));
  EXPECT_TRUE(j["greedy"].contains("1") && j["greedy"].contains("2")) << j.dump();
  EXPECT_FALSE(j["greedy"].contains("3")) << j.dump();  // the file has no difficulty 3
  EXPECT_TRUE(j["majority"].contains("2")) << j.dump();
  // A checker that fails stops the run with its name and status.
  auto f = sh(std::string(OURO_BIN) + " train --config " + (dir / "cfg.toml").string() + " --set run.out_dir=" +
                  (dir / "run2").string() + " --set 'loop.verifier_cmd=sh -c \"exit 3\"'",
              "fail.log");
  EXPECT_NE(f.code, 0);
  EXPECT_NE(f.out.find("verifier command 'sh -c \"exit 3\"': exited with status 3"), std::string::npos) << f.out;
}
