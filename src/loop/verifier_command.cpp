#include "loop/verifier_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

#include "ouro/error.h"

extern char** environ;

namespace ouro {

namespace {

std::string shown(const VerifierCommand& v) { return fmt::format("verifier command '{}'", v.command); }

// The last few hundred bytes of what the program wrote on stderr, for an error message.
std::string tail_of(const std::string& s) {
  constexpr size_t kTail = 400;
  std::string t = s.size() > kTail ? "..." + s.substr(s.size() - kTail) : s;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return t.empty() ? "" : fmt::format("; its stderr ends: {}", t);
}

// SIGPIPE from writing to a program that exited early is this thread's: blocked while the program
// runs (the write then fails with EPIPE, which is handled), and a pending one taken back after.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlocked() {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_, old_;
};

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { OURO_CHECK(::pipe2(fd, O_CLOEXEC) == 0, "verifier command: pipe: {}", std::strerror(errno)); }
  ~Pipe() { close_both(); }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]), fd[i] = -1;
  }
  void close_both() { close_end(0), close_end(1); }
};

struct Output {
  std::string out, err;
  int status = 0;
};

using Clock = std::chrono::steady_clock;
using Deadline = decltype(Clock::now() + std::chrono::duration<double>(0));

// Starts argv with the pipes as its stdin, stdout and stderr; this side's ends non-blocking.
pid_t spawn_program(const VerifierCommand& v, const std::vector<std::string>& argv, Pipe& in, Pipe& out,
                    Pipe& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.fd[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out.fd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err.fd[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  OURO_CHECK(rc == 0, "{}: cannot start '{}': {}", shown(v), argv[0], std::strerror(rc));
  in.close_end(0), out.close_end(1), err.close_end(1);
  for (int fd : {in.fd[1], out.fd[0], err.fd[0]}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return pid;
}

// Feeds `input` to the program's stdin and collects its stdout and stderr into o until both
// close. Returns true if the deadline passed first.
bool exchange_io(const VerifierCommand& v, const std::string& input, Pipe& in, Pipe& out, Pipe& err, Output& o,
                 Deadline deadline) {
  size_t written = 0;
  while (out.fd[0] >= 0 || err.fd[0] >= 0) {
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0) return true;
    pollfd p[3];
    int n = 0;
    if (in.fd[1] >= 0) p[n++] = {in.fd[1], POLLOUT, 0};
    if (out.fd[0] >= 0) p[n++] = {out.fd[0], POLLIN, 0};
    if (err.fd[0] >= 0) p[n++] = {err.fd[0], POLLIN, 0};
    const int ready = ::poll(p, n, static_cast<int>(std::min(left * 1000 + 1, 1000.0)));
    if (ready < 0 && errno == EINTR) continue;
    OURO_CHECK(ready >= 0, "{}: poll: {}", shown(v), std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      if (!p[i].revents) continue;
      if (p[i].fd == in.fd[1]) {
        const ssize_t w = ::write(in.fd[1], input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        // EPIPE: the program stopped reading; what it wrote still decides.
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) in.close_end(1);
        continue;
      }
      Pipe& src = p[i].fd == out.fd[0] ? out : err;
      char buf[65536];
      const ssize_t r = ::read(src.fd[0], buf, sizeof buf);
      if (r > 0) (&src == &out ? o.out : o.err).append(buf, static_cast<size_t>(r));
      else if (r == 0 || (errno != EAGAIN && errno != EINTR)) src.close_end(0);
    }
  }
  return false;
}

// Waits for the program's exit status: a program that closed its outputs may still be running,
// and the deadline holds for its exit too. Past it (or timed_out already) the program is
// killed. Returns whether it timed out.
bool reap_program(pid_t pid, Deadline deadline, bool timed_out, int* status) {
  while (!timed_out) {
    const pid_t done = ::waitpid(pid, status, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) break;
    if (Clock::now() >= deadline) timed_out = true;
    else ::usleep(2000);
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
  }
  return timed_out;
}

// Runs argv with `input` on its stdin; collects stdout and stderr; kills it at the deadline.
Output run_program(const VerifierCommand& v, const std::vector<std::string>& argv, const std::string& input) {
  SigpipeBlocked no_sigpipe;
  Pipe in, out, err;
  const pid_t pid = spawn_program(v, argv, in, out, err);
  Output o;
  if (input.empty()) in.close_end(1);
  const auto deadline = Clock::now() + std::chrono::duration<double>(v.timeout_s);
  bool timed_out = exchange_io(v, input, in, out, err, o, deadline);
  timed_out = reap_program(pid, deadline, timed_out, &o.status);
  OURO_CHECK(!timed_out, "{}: no result within {} s (loop.verifier_timeout_s); killed{}", shown(v), v.timeout_s,
             tail_of(o.err));
  return o;
}

}  // namespace

std::vector<std::string> split_command(const std::string& command) {
  std::vector<std::string> words;
  std::string w;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < command.size(); ++i) {
    const char c = command[i];
    if (quote) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < command.size()) w += command[++i];
      else w += c;
    } else if (c == '\'' || c == '"') {
      quote = c, in_word = true;
    } else if (c == '\\' && i + 1 < command.size()) {
      w += command[++i], in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(w), w.clear(), in_word = false;
    } else {
      w += c, in_word = true;
    }
  }
  OURO_CHECK(!quote, "verifier command '{}': unterminated {} quote", command, quote);
  if (in_word) words.push_back(w);
  OURO_CHECK(!words.empty(), "verifier command is empty");
  return words;
}

std::vector<double> run_verifier(const VerifierCommand& v,
                                 const std::vector<std::pair<std::string, std::string>>& prompt_sample) {
  if (prompt_sample.empty()) return {};  // nothing to judge: the program is not started
  const std::vector<std::string> argv = v.shell ? std::vector<std::string>{"/bin/sh", "-c", v.command}
                                                : split_command(v.command);
  std::string input;
  for (const auto& [prompt, sample] : prompt_sample)
    input += nlohmann::json{{"prompt", prompt}, {"sample", sample}}.dump(-1, ' ', false,
                                                                        nlohmann::json::error_handler_t::replace) +
             "\n";
  const Output o = run_program(v, argv, input);
  if (WIFSIGNALED(o.status))
    fail("{}: killed by signal {}{}", shown(v), WTERMSIG(o.status), tail_of(o.err));
  OURO_CHECK(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0, "{}: exited with status {}{}", shown(v),
             WEXITSTATUS(o.status), tail_of(o.err));
  std::vector<double> scores;
  size_t line_no = 0, pos = 0;
  while (pos < o.out.size()) {
    size_t end = o.out.find('\n', pos);
    if (end == std::string::npos) end = o.out.size();
    std::string line = o.out.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    line.erase(0, line.find_first_not_of(" \t"));
    char* stop = nullptr;
    errno = 0;
    const double s = line.empty() ? 0 : std::strtod(line.c_str(), &stop);
    OURO_CHECK(!line.empty() && stop == line.c_str() + line.size() && errno == 0 && std::isfinite(s),
               "{}: output line {}: '{}' is not a score (one number per line expected)", shown(v), line_no,
               line.substr(0, 80));
    scores.push_back(s);
  }
  OURO_CHECK(scores.size() == prompt_sample.size(), "{}: wrote {} score lines for {} samples (one per input line)",
             shown(v), scores.size(), prompt_sample.size());
  return scores;
}

std::vector<int> verify_answers(const Task& task, const VerifierCommand& v, const std::vector<Problem>& problems,
                                const std::vector<std::string>& generated) {
  OURO_CHECK(problems.size() == generated.size(), "verify_answers: {} problems, {} answers", problems.size(),
             generated.size());
  std::vector<int> out(problems.size(), -1);
  if (v.empty()) {
    for (size_t i = 0; i < problems.size(); ++i)
      if (problems[i].answer_known) out[i] = task.verify(problems[i], generated[i]) ? 1 : 0;
    return out;
  }
  std::vector<std::pair<std::string, std::string>> items;
  for (size_t i = 0; i < problems.size(); ++i) items.emplace_back(problems[i].prompt, Task::extract_answer(generated[i]));
  const auto scores = run_verifier(v, items);
  for (size_t i = 0; i < scores.size(); ++i) out[i] = scores[i] >= 0.5 ? 1 : 0;
  return out;
}

}  // namespace ouro
