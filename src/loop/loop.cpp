#include "loop/loop.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/hash.h"
#include "common/jsonl.h"
#include "common/trace.h"
#include "loop/buffer.h"
#include "loop/exchange.h"
#include "loop/reference.h"
#include "loop/round_phases.h"
#include "loop/selection.h"
#include "loop/task_eval.h"
#include "loop/tasks.h"
#include "loop/verifier_command.h"
#include "model/generate.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"
#include "train/run_log.h"
#include "train/run_state.h"
#include "train/run_tokenizer.h"

namespace fs = std::filesystem;

namespace ouro {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Tokens text_tokens(const std::string& s) { return Tokens(s.begin(), s.end()); }

bool lists_scorer(const std::string& list, const std::string& name) {
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item == name) return true;
  }
  return false;
}

// The tokenizer that turns the loop's ids into text (samples file, task answers). Tasks are
// byte-level by construction (`ouro prepare --task` writes bytes; the verifiers read bytes);
// text runs take data.tokenizer, the one their data was prepared with, or bytes for a 257-token
// model.
Tokenizer loop_tokenizer(const Config& cfg) {
  const auto& L = cfg.loop;
  if (!L.task.empty()) {
    OURO_CHECK(cfg.model.vocab_size == kByteVocab,
               "loop.task = '{}' needs a byte-level model (model.vocab_size = {}, got {}): the tasks' "
               "data (`ouro prepare --task`) and verifiers are bytes",
               L.task, kByteVocab, cfg.model.vocab_size);
    return Tokenizer::byte_level();
  }
  auto tk = load_run_tokenizer(cfg.data.tokenizer, cfg.model.vocab_size, {});
  OURO_CHECK(tk.has_value(),
             "the loop writes its samples as text: set data.tokenizer (the tokenizer data.train was prepared "
             "with) for a model of {} tokens, or use a byte-level model (model.vocab_size = {})",
             cfg.model.vocab_size, kByteVocab);
  return *tk;
}

class Loop {
 public:
  Loop(TrainSession& s, LoopParts parts)
      : session_(s), cfg_(s.config()), loop_cfg_(cfg_.loop), parts_(std::move(parts)),
        buffer_(loop_cfg_.buffer_tokens, loop_cfg_.evict, loop_cfg_.reuse_limit, static_cast<uint64_t>(cfg_.train.seed) ^ 0xB0FFu,
                s.comm().rank()),
        syn_frac_(loop_cfg_.syn_frac),
        tok_(loop_tokenizer(cfg_)) {
    if (!loop_cfg_.task.empty()) task_ = make_task(loop_cfg_.task, loop_cfg_.task_file);
    out_ = cfg_.run.out_dir;
    if (lists_scorer(loop_cfg_.scorer, "ref_logprob")) ref_ = std::make_unique<ReferenceStore>(loop_cfg_.ref, loop_cfg_.ref_lag, out_, s.comm());
    // The loop's state rides in every checkpoint's state.json under "loop": the state as last
    // published (between rounds), not as the buffer changes while a round trains.
    s.run_state().register_state("loop", [this] { return published_; });
    if (const auto& j = s.run_state().resumed("loop"); !j.is_null()) {
      round_ = j.at("round").get<int>();
      syn_frac_ = j.at("syn_frac").get<double>();
      buffer_.from_json(j.at("buffer"));
      if (ref_ && j.contains("ref")) ref_->from_json(j.at("ref"), s.model().num_params());
    }
    // The records are rank 0's to write; every rank holds the same figures.
    if (s.is_rank0()) {
      truncate_jsonl(out_ / "rounds.jsonl", "round", round_);
      truncate_jsonl(out_ / "samples.jsonl", "round", round_);
      rounds_.open(out_ / "rounds.jsonl", std::ios::app);
      samples_.open(out_ / "samples.jsonl", std::ios::app);
      OURO_CHECK(rounds_.good() && samples_.good(), "{}: cannot write the loop's records", out_.string());
    }
    publish_state();
  }

  ~Loop() { session_.run_state().unregister_state("loop"); }  // the saver refers to this loop

  TrainSummary run() {
    if (!session_.run_until(loop_cfg_.start_step)) return session_.finish();
    // Within rounds only round boundaries are checkpointed: a run stopped mid-round saves the
    // state before the round and redoes it on resume, generation included, to the same bits.
    session_.set_autosave(false);
    while (round_ < loop_cfg_.rounds && session_.step() < session_.last_step()) {
      if (!one_round()) return session_.finish();
    }
    session_.set_autosave(true);
    // After the last round, training continues on the mix until train.steps.
    session_.run_until(session_.last_step(), buffer_.size() ? &buffer_ : nullptr, syn_rows());
    auto summary = session_.finish();
    if (ref_) ref_->collect_garbage();
    return summary;
  }

 private:
  // Records past the checkpoint a resumed run starts from belong to work it will redo.
  static void truncate_jsonl(const fs::path& file, const char* key, int keep_below) {
    rewrite_jsonl(file, [&](const std::string& text) { return jsonl_lines_below(text, key, keep_below); });
  }

  // The easiest difficulty this round prompts with: the curriculum moves by task_grow per round.
  int task_min() const { return loop_cfg_.task_min + loop_cfg_.task_grow * round_; }

  int syn_rows() const {
    if (buffer_.size() == 0 || loop_cfg_.mode == LoopMode::baseline) return 0;
    if (loop_cfg_.mode == LoopMode::replace) return cfg_.train.batch_size;
    return static_cast<int>(std::lround(syn_frac_ * cfg_.train.batch_size));
  }

  void publish_state() {
    nlohmann::json j = {{"round", round_}, {"syn_frac", syn_frac_}, {"buffer", buffer_.to_json()}};
    if (ref_) j["ref"] = ref_->to_json();
    published_ = std::move(j);
  }

  void save() {
    session_.save();
    if (ref_) ref_->collect_garbage();  // after the save: checkpoints the keep rule removed free their files
  }

  // The prompts of this round: task problems, or real-text prefixes with their continuations.
  std::vector<Candidate> make_prompts() {
    std::vector<Candidate> prompts;
    const uint64_t seed = splitmix64_pair(static_cast<uint64_t>(cfg_.train.seed), static_cast<uint64_t>(round_));
    if (task_) {
      const int span = loop_cfg_.task_max - loop_cfg_.task_min + 1;
      for (int i = 0; i < loop_cfg_.prompts; ++i) {
        Problem p = task_->make(task_min() + i % span, seed, static_cast<uint64_t>(i));
        Candidate c;
        c.prompt = i;
        c.prompt_tokens = text_tokens(p.prompt);
        c.prompt_tokens.insert(c.prompt_tokens.begin(), kByteEot);
        problems_.push_back(p);
        prompts.push_back(std::move(c));
      }
      return prompts;
    }
    // Text: windows of the training data in a fixed order of their own (not the loader's).
    DataLoader src(cfg_.data.train, 1, loop_cfg_.prompt_tokens + loop_cfg_.max_new_tokens, 0, 1, seed, true);
    std::vector<int> x(loop_cfg_.prompt_tokens + loop_cfg_.max_new_tokens), y(x.size());
    for (int i = 0; i < loop_cfg_.prompts; ++i) {
      src.next_batch(x.data(), y.data());
      Candidate c;
      c.prompt = i;
      c.prompt_tokens.assign(x.begin(), x.begin() + loop_cfg_.prompt_tokens);
      c.reference.assign(x.begin() + loop_cfg_.prompt_tokens, x.end());
      prompts.push_back(std::move(c));
    }
    return prompts;
  }

  // The candidates of this rank's prompts (all of them on one rank). A sample's seed depends on
  // (seed, round, prompt, sample) only, so the candidates do not depend on the world size.
  std::vector<Candidate> generate_round(const std::vector<Candidate>& prompts) {
    // The frozen snapshot: a second model with the current weights and room for K rows.
    GPT2 gen(session_.model().config(), session_.ops(), loop_cfg_.k, cfg_.model.seq_len);
    gen.set_params(session_.model().get_params());
    SampleOptions so;
    so.max_tokens = loop_cfg_.max_new_tokens;
    so.temperature = static_cast<float>(loop_cfg_.temperature);
    so.top_k = loop_cfg_.top_k;
    so.top_p = static_cast<float>(loop_cfg_.top_p);
    // Tasks answer on one line; text stops at <|endoftext|> (a tokenizer without it: at the length).
    const auto eot = tok_.special_id(kEndOfText);
    so.stop_token = task_ ? '\n' : eot ? static_cast<int>(*eot) : -1;
    std::vector<Candidate> out;
    for (int i : prompts_of_rank(static_cast<int>(prompts.size()), session_.comm().rank(), session_.comm().world())) {
      const Candidate& p = prompts[i];
      std::vector<std::vector<int>> rows(loop_cfg_.k, p.prompt_tokens);
      std::vector<uint64_t> seeds(loop_cfg_.k);
      for (int k = 0; k < loop_cfg_.k; ++k)
        seeds[k] = splitmix64_pair(splitmix64_pair(static_cast<uint64_t>(cfg_.train.seed), 1000003u * round_ + p.prompt), k);
      auto g = generate_batch(gen, rows, so, seeds);
      for (int k = 0; k < loop_cfg_.k; ++k) {
        Candidate c = p;
        c.sample = k;
        c.stopped = g[k].stopped;
        c.gen = g[k].tokens;
        c.logprobs = g[k].logprobs;
        if (c.stopped) c.gen.pop_back(), c.logprobs.pop_back();  // the stop token is not content
        out.push_back(std::move(c));
      }
    }
    return out;
  }

  // Ids as text; ids the tokenizer lacks (a model's vocabulary may be padded past it) are dropped.
  std::string to_text(const Tokens& t) const {
    std::string out;
    for (int x : t)
      if (x >= 0 && tok_.has_token(static_cast<uint32_t>(x))) out += tok_.token_bytes(static_cast<uint32_t>(x));
    return out;
  }

  // A gathered candidate carries only what generation made: the rest comes from its prompt.
  void complete(Candidate& c, const std::vector<Candidate>& prompts) const {
    const Candidate& p = prompts.at(c.prompt);
    c.prompt_tokens = p.prompt_tokens;
    c.reference = p.reference;
    if (task_) {
      c.answer = to_text(c.gen);
      const Problem& p = problems_[c.prompt];
      c.verified = p.answer_known ? (task_->verify(p, c.answer) ? 1 : 0) : -1;
      c.plausible = task_->plausible(problems_[c.prompt], c.answer) ? 1 : 0;
    }
  }

  // The user's checker judges every candidate of the round in one run, on rank 0 (a program need
  // not give the same scores twice); the verdicts go to every rank.
  void verify_by_command(std::vector<Candidate>& cands) {
    std::vector<int> verdicts(cands.size(), -1);
    if (session_.comm().rank() == 0) {
      std::vector<Problem> probs;
      std::vector<std::string> answers;
      for (const auto& c : cands) probs.push_back(problems_[c.prompt]), answers.push_back(c.answer);
      verdicts = verify_answers(*task_, verifier_, probs, answers);
    }
    if (session_.comm().world() > 1) session_.comm().broadcast(verdicts.data(), verdicts.size() * sizeof(int), 0);
    for (size_t i = 0; i < cands.size(); ++i) cands[i].verified = verdicts[i];
  }

  // Round r's reference model over this rank's candidates (they are grouped by prompt).
  void reference_score(std::vector<Candidate>& mine, double fwd_flops_per_token) {
    const ReferenceEntry& e = ref_->for_round(round_);
    GPT2 ref(session_.model().config(), session_.ops(), loop_cfg_.k, cfg_.model.seq_len);
    ref.set_params(e.weights);
    score_with_reference(ref, mine, loop_cfg_.k, loop_cfg_.max_new_tokens, fwd_flops_per_token);
  }

  // Greedy exact-match accuracy per difficulty, one beyond the trained range included.
  nlohmann::json task_accuracy() {
    GPT2 gen(session_.model().config(), session_.ops(), 1, cfg_.model.seq_len);
    gen.set_params(session_.model().get_params());
    TaskEvalOptions te;
    te.min_d = task_min();
    te.max_d = task_min() + (loop_cfg_.task_max - loop_cfg_.task_min) + 1;
    te.problems = 16;
    te.max_new_tokens = loop_cfg_.max_new_tokens;
    te.verifier = verifier_;
    return evaluate_task(gen, *task_, te)["greedy"];
  }

  // One round: begin -> generate -> score -> select -> train -> guard -> record. Returns false
  // when the run must stop (the last step, or an interruption that rolled the round back).
  bool one_round() {
    const RoundStart start = begin_round();
    Scored scored;
    Selected sel;
    if (loop_cfg_.mode != LoopMode::baseline) {
      Generated gen = generate();
      TraceRange trace("score");
      scored = score(std::move(gen), start);
      sel = select(scored);
    } else {
      sel.extra_steps = baseline_extra_steps(start);
    }
    buffer_.start_round();
    Trained trained;
    if (!train(start, sel, trained)) return false;
    const Guards guards = check_guards(loop_cfg_, scored.cands, sel, start.val, trained.val, parts_.extra_guard_fails && parts_.extra_guard_fails(round_));
    if (guards.rolled_back) roll_back(start, trained, guards);
    record(start, scored, sel, trained, guards);
    ++round_;
    publish_state();
    if (cfg_.checkpoint.every > 0 || session_.step() >= session_.last_step()) save();
    return session_.step() < session_.last_step();
  }

  // The state the round starts from: its snapshot (for a rollback) and held-out loss.
  RoundStart begin_round() {
    RoundStart r;
    r.started = Clock::now();
    r.step = session_.step();
    r.snapshot = session_.snapshot();
    r.buffer = buffer_.to_json();
    r.syn_frac = syn_frac_;
    r.val = session_.evaluate_val();
    r.fwd_flops_per_token = gpt2_flops_per_token(session_.model().config(), cfg_.model.seq_len) / 3.0;
    if (ref_ && loop_cfg_.mode != LoopMode::baseline) {
      ref_->round_starts(round_, r.step, r.snapshot.params);
      ref_->collect_garbage();  // without mid-loop checkpoints, files a round stopped needing go now
    }
    problems_.clear();
    return r;
  }

  Generated generate() {
    const auto t = Clock::now();
    Generated g;
    g.prompts = make_prompts();  // every rank knows every prompt; it generates for its share
    {
      TraceRange trace("generate");
      g.mine = generate_round(g.prompts);
    }
    g.seconds = since(t);
    return g;
  }

  // Scores this rank's candidates against the reference (sharded like generation), gathers
  // every rank's, completes them from their prompts and self-scores them.
  Scored score(Generated g, const RoundStart& start) {
    Scored r;
    auto t = Clock::now();
    if (ref_) reference_score(g.mine, start.fwd_flops_per_token);
    double local_score_s = since(t);
    Communicator& comm = session_.comm();
    // The slowest rank's time is the round's: the ranks wait for each other at the gather.
    double phase_s[2] = {g.seconds, local_score_s};
    if (comm.world() > 1) comm.all_reduce(phase_s, 2, ReduceOp::Max);
    r.generate_s = phase_s[0];
    r.score_s = phase_s[1];
    r.gathered = Clock::now();
    r.cands = gather_candidates(comm, g.mine);
    for (auto& c : r.cands) {
      complete(c, g.prompts);
      // Prompt and generated tokens (the stop token included) went through the model.
      r.gen_tokens += static_cast<double>(c.prompt_tokens.size() + c.gen.size() + (c.stopped ? 1 : 0));
      if (ref_)
        r.score_flops += static_cast<double>(std::min<size_t>(cfg_.model.seq_len, c.prompt_tokens.size() + loop_cfg_.max_new_tokens)) *
                         start.fwd_flops_per_token;
    }
    if (task_ && !verifier_.empty()) verify_by_command(r.cands);
    score_candidates(r.cands);
    return r;
  }

  // Filters the candidates and adds the accepted to the replay buffer (the same on every rank).
  Selected select(Scored& scored) {
    Selected r;
    std::vector<Tokens> existing;
    for (const auto& b : buffer_.samples()) existing.push_back(b.tokens);
    if (!task_)  // text dedup compares continuations; buffer docs hold prompt + continuation
      for (auto& e : existing) e.erase(e.begin(), e.begin() + std::min<size_t>(e.size(), loop_cfg_.prompt_tokens));
    r.rejected_by = select_candidates(scored.cands, loop_cfg_, existing);
    if (loop_cfg_.mode == LoopMode::replace) buffer_.clear();
    for (const auto& c : scored.cands) {
      ++r.generated;
      if (!c.accepted) continue;
      ++r.accepted;
      BufferSample b;
      b.tokens = c.prompt_tokens;
      b.tokens.insert(b.tokens.end(), c.gen.begin(), c.gen.end());
      if (task_) b.tokens.push_back('\n');
      b.score = c.mean_logprob;
      b.round = round_;
      buffer_.add(std::move(b));
    }
    r.score_s = scored.score_s + since(scored.gathered);
    Communicator& comm = session_.comm();
    const uint64_t fp = check_identical_across_ranks(comm, buffer_.to_json().dump(), "replay buffers");
    if (comm.world() > 1)
      logger()->info("round {}: the {} ranks' replay buffers are bitwise identical (fingerprint {:016x})", round_,
                     comm.world(), fp);
    return r;
  }

  // Same FLOPs on real data: the generation this round would have done, as extra steps.
  int64_t baseline_extra_steps(const RoundStart& start) const {
    const double would = static_cast<double>(loop_cfg_.prompts) * loop_cfg_.k *
                         (loop_cfg_.prompt_tokens + loop_cfg_.max_new_tokens) * start.fwd_flops_per_token;
    return static_cast<int64_t>(std::llround(would / session_.step_flops()));
  }

  // The round's steps on the mix, then the held-out loss after them. false: stopped inside
  // the round (a signal, or --stop-at), which is then checkpointed as it was before the round.
  bool train(const RoundStart& start, const Selected& sel, Trained& r) {
    auto t = Clock::now();
    publish_state();
    r.rows = syn_rows();
    const int64_t target = start.step + loop_cfg_.round_steps + sel.extra_steps;
    session_.run_until(target, r.rows ? &buffer_ : nullptr, r.rows);
    r.seconds = since(t);
    if (session_.stop_requested() || (session_.step() < target && session_.step() < session_.config().train.steps)) {
      session_.restore(start.snapshot);
      buffer_.from_json(start.buffer);
      syn_frac_ = start.syn_frac;
      publish_state();
      save();
      logger()->warn("round {} interrupted: checkpointed the state before it (step {}); --resume redoes it",
                     round_, start.step);
      return false;
    }
    r.val = session_.evaluate_val();
    return true;
  }

  // A failed guard restores the state before the round and halves the synthetic fraction.
  void roll_back(const RoundStart& start, const Trained& trained, const Guards& g) {
    std::string why;
    for (const auto& r : g.failed) why += (why.empty() ? "" : ", ") + r;
    session_.restore(start.snapshot);
    buffer_.from_json(start.buffer);
    syn_frac_ = start.syn_frac / 2;
    logger()->warn("round {} rolled back to step {} ({}): val loss {:.4f} -> {:.4f} (tail {:.4f} -> {:.4f}, "
                   "tolerance {}), distinct-2 {:.3f} vs real {:.3f}, self-BLEU {:.3f} vs real {:.3f}, "
                   "accept rate {:.2f}; syn_frac {} -> {}",
                   round_, start.step, why, start.val.loss, trained.val.loss, start.val.tail_loss,
                   trained.val.tail_loss, loop_cfg_.guard_tolerance, g.distinct_2, g.real_distinct_2, g.self_bleu,
                   g.real_self_bleu, g.accept_rate, start.syn_frac, syn_frac_);
  }

  void record(const RoundStart& start, const Scored& scored, const Selected& sel, const Trained& trained,
              const Guards& g) {
    const BufferSummary buf{buffer_.tokens(),
                            fmt::format("{:016x}", buffer_fingerprint(buffer_.to_json().dump()))};
    nlohmann::json rec = round_record(loop_cfg_, round_, start, scored, sel, trained, g, session_.step(), session_.step_flops(),
                                      session_.comm().world(), buf);
    if (ref_ && loop_cfg_.mode != LoopMode::baseline) add_reference_record(rec, loop_cfg_, scored.cands, ref_->for_round(round_));
    if (session_.is_rank0()) write_records(rec, scored.cands);
    logger()->info("round {}: generated {}, accepted {} ({:.0f}%), buffer {} tokens, val {:.4f} -> {:.4f}{}",
                   round_, sel.generated, sel.accepted, sel.generated ? 100.0 * sel.accepted / sel.generated : 0.0,
                   buffer_.tokens(), start.val.loss, trained.val.loss, g.rolled_back ? " (rolled back)" : "");
  }

  // rounds.jsonl, and 20 accepted and 20 rejected samples to samples.jsonl (rank 0).
  void write_records(nlohmann::json& rec, const std::vector<Candidate>& cands) {
    if (task_) rec["task_accuracy"] = task_accuracy();
    rounds_ << rec.dump() << '\n';
    rounds_.flush();
    int na = 0, nr = 0;
    for (const auto& c : cands) {
      bool a = c.accepted;
      if ((a && na >= 20) || (!a && nr >= 20)) continue;
      (a ? na : nr)++;
      nlohmann::json j{{"round", round_}, {"accepted", a}, {"rejected_by", c.rejected_by},
                       {"score", c.mean_logprob}, {"prompt", to_text(c.prompt_tokens)}, {"text", to_text(c.gen)}};
      if (std::isfinite(c.ref_logprob)) j["ref_score"] = c.ref_logprob;
      if (c.verified >= 0) j["verified"] = c.verified;  // task: 1 correct, 0 wrong (unknown: absent)
      // generated bytes need not be valid UTF-8: replace, never throw
      samples_ << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
    samples_.flush();
  }

  TrainSession& session_;
  const Config& cfg_;
  const LoopSection& loop_cfg_;
  LoopParts parts_;
  ReplayBuffer buffer_;
  double syn_frac_;
  Tokenizer tok_;
  int round_ = 0;
  std::unique_ptr<Task> task_;
  const VerifierCommand verifier_{loop_cfg_.verifier_cmd, loop_cfg_.verifier_shell, loop_cfg_.verifier_timeout_s};
  std::unique_ptr<ReferenceStore> ref_;  // the ref_logprob scorer's reference weights
  std::vector<Problem> problems_;
  fs::path out_;
  std::ofstream rounds_, samples_;
  nlohmann::json published_;  // the state the next checkpoint records
};

}  // namespace

TrainSummary run_loop(TrainSession& session, LoopParts parts) {
  Loop loop(session, std::move(parts));
  return loop.run();
}

}  // namespace ouro
