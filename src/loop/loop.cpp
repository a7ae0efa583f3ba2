#include "loop/loop.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/trace.h"
#include "loop/buffer.h"
#include "loop/exchange.h"
#include "loop/reference.h"
#include "loop/selection.h"
#include "loop/task_eval.h"
#include "loop/tasks.h"
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

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

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

nlohmann::json mean_or_null(const std::vector<double>& v) {
  if (v.empty()) return nullptr;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
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
  Loop(TrainSession& s, std::set<int> fault_rollback)
      : s_(s), cfg_(s.config()), L_(cfg_.loop), fault_rollback_(std::move(fault_rollback)),
        buffer_(L_.buffer_tokens, L_.evict, L_.reuse_limit, static_cast<uint64_t>(cfg_.train.seed) ^ 0xB0FFu,
                s.comm().rank()),
        syn_frac_(L_.syn_frac),
        tok_(loop_tokenizer(cfg_)) {
    if (!L_.task.empty()) task_ = make_task(L_.task);
    out_ = cfg_.run.out_dir;
    if (lists_scorer(L_.scorer, "ref_logprob")) ref_ = std::make_unique<ReferenceStore>(L_.ref, L_.ref_lag, out_, s.comm());
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
    if (s.lead()) {
      truncate_jsonl(out_ / "rounds.jsonl", "round", round_);
      truncate_jsonl(out_ / "samples.jsonl", "round", round_);
      rounds_.open(out_ / "rounds.jsonl", std::ios::app);
      samples_.open(out_ / "samples.jsonl", std::ios::app);
      OURO_CHECK(rounds_.good() && samples_.good(), "{}: cannot write the loop's records", out_.string());
    }
    publish_state();
  }

  ~Loop() { s_.run_state().unregister_state("loop"); }  // the saver refers to this loop

  TrainSummary run() {
    if (!s_.run_until(L_.start_step)) return s_.finish();
    // Within rounds only round boundaries are checkpointed: a run stopped mid-round saves the
    // state before the round and redoes it on resume, generation included, to the same bits.
    s_.set_autosave(false);
    while (round_ < L_.rounds && s_.step() < s_.last_step()) {
      if (!one_round()) return s_.finish();
    }
    s_.set_autosave(true);
    // After the last round, training continues on the mix until train.steps.
    s_.run_until(s_.last_step(), buffer_.size() ? &buffer_ : nullptr, syn_rows());
    auto summary = s_.finish();
    if (ref_) ref_->collect_garbage();
    return summary;
  }

 private:
  // Records past the checkpoint a resumed run starts from belong to work it will redo.
  static void truncate_jsonl(const fs::path& file, const char* key, int keep_below) {
    std::ifstream in(file);
    if (!in) return;
    std::string kept, line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value(key, 0) < keep_below) kept += line + "\n";
    }
    in.close();
    std::ofstream(file, std::ios::trunc) << kept;
  }

  // The easiest difficulty this round prompts with: the curriculum moves by task_grow per round.
  int task_min() const { return L_.task_min + L_.task_grow * round_; }

  int syn_rows() const {
    if (buffer_.size() == 0 || L_.mode == "baseline") return 0;
    if (L_.mode == "replace") return cfg_.train.batch_size;
    return static_cast<int>(std::lround(syn_frac_ * cfg_.train.batch_size));
  }

  void publish_state() {
    nlohmann::json j = {{"round", round_}, {"syn_frac", syn_frac_}, {"buffer", buffer_.to_json()}};
    if (ref_) j["ref"] = ref_->to_json();
    published_ = std::move(j);
  }

  void save() {
    s_.save();
    if (ref_) ref_->collect_garbage();  // after the save: checkpoints the keep rule removed free their files
  }

  // The prompts of this round: task problems, or real-text prefixes with their continuations.
  std::vector<Candidate> make_prompts() {
    std::vector<Candidate> prompts;
    const uint64_t seed = mix(static_cast<uint64_t>(cfg_.train.seed), static_cast<uint64_t>(round_));
    if (task_) {
      const int span = L_.task_max - L_.task_min + 1;
      for (int i = 0; i < L_.prompts; ++i) {
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
    DataLoader src(cfg_.data.train, 1, L_.prompt_tokens + L_.max_new_tokens, 0, 1, seed, true);
    std::vector<int> x(L_.prompt_tokens + L_.max_new_tokens), y(x.size());
    for (int i = 0; i < L_.prompts; ++i) {
      src.next_batch(x.data(), y.data());
      Candidate c;
      c.prompt = i;
      c.prompt_tokens.assign(x.begin(), x.begin() + L_.prompt_tokens);
      c.reference.assign(x.begin() + L_.prompt_tokens, x.end());
      prompts.push_back(std::move(c));
    }
    return prompts;
  }

  // The candidates of this rank's prompts (all of them on one rank). A sample's seed depends on
  // (seed, round, prompt, sample) only, so the candidates do not depend on the world size.
  std::vector<Candidate> generate_round(const std::vector<Candidate>& prompts) {
    // The frozen snapshot: a second model with the current weights and room for K rows.
    GPT2 gen(s_.model().config(), s_.ops(), L_.k, cfg_.model.seq_len);
    gen.set_params(s_.model().get_params());
    SampleOptions so;
    so.max_tokens = L_.max_new_tokens;
    so.temperature = static_cast<float>(L_.temperature);
    so.top_k = L_.top_k;
    so.top_p = static_cast<float>(L_.top_p);
    // Tasks answer on one line; text stops at <|endoftext|> (a tokenizer without it: at the length).
    const auto eot = tok_.special_id(kEndOfText);
    so.stop_token = task_ ? '\n' : eot ? static_cast<int>(*eot) : -1;
    std::vector<Candidate> out;
    for (int i : prompts_of_rank(static_cast<int>(prompts.size()), s_.comm().rank(), s_.comm().world())) {
      const Candidate& p = prompts[i];
      std::vector<std::vector<int>> rows(L_.k, p.prompt_tokens);
      std::vector<uint64_t> seeds(L_.k);
      for (int k = 0; k < L_.k; ++k)
        seeds[k] = mix(mix(static_cast<uint64_t>(cfg_.train.seed), 1000003u * round_ + p.prompt), k);
      auto g = generate_batch(gen, rows, so, seeds);
      for (int k = 0; k < L_.k; ++k) {
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
      c.verified = task_->verify(problems_[c.prompt], c.answer) ? 1 : 0;
      c.plausible = task_->plausible(problems_[c.prompt], c.answer) ? 1 : 0;
    }
  }

  // Round r's reference model over this rank's candidates (they are grouped by prompt).
  void reference_score(std::vector<Candidate>& mine, double fwd_flops_per_token) {
    const ReferenceEntry& e = ref_->for_round(round_);
    GPT2 ref(s_.model().config(), s_.ops(), L_.k, cfg_.model.seq_len);
    ref.set_params(e.weights);
    score_with_reference(ref, mine, L_.k, L_.max_new_tokens, fwd_flops_per_token);
  }

  // Greedy exact-match accuracy per difficulty, one beyond the trained range included.
  nlohmann::json task_accuracy() {
    GPT2 gen(s_.model().config(), s_.ops(), 1, cfg_.model.seq_len);
    gen.set_params(s_.model().get_params());
    TaskEvalOptions te;
    te.min_d = task_min();
    te.max_d = task_min() + (L_.task_max - L_.task_min) + 1;
    te.problems = 16;
    te.max_new_tokens = L_.max_new_tokens;
    return evaluate_task(gen, *task_, te)["greedy"];
  }

  bool one_round() {
    const auto t_round = Clock::now();
    const int64_t start = s_.step();
    auto snap = s_.snapshot();
    auto buffer_before = buffer_.to_json();
    const double syn_before = syn_frac_;
    const EvalResult before = s_.evaluate_val();
    const double fwd_flops_per_token = gpt2_flops_per_token(s_.model().config(), cfg_.model.seq_len) / 3.0;
    Communicator& comm = s_.comm();
    if (ref_ && L_.mode != "baseline") {
      ref_->round_starts(round_, start, snap.params);
      ref_->collect_garbage();  // without mid-loop checkpoints, files a round stopped needing go now
    }

    nlohmann::json rec = {{"round", round_}, {"step_start", start}, {"mode", L_.mode}};
    double gen_s = 0, score_s = 0, gen_tokens = 0, score_flops = 0;
    int generated = 0, accepted = 0;
    std::map<std::string, int> rejected_by;
    std::vector<Candidate> cands;
    problems_.clear();
    int64_t extra_steps = 0;
    if (L_.mode != "baseline") {
      auto t = Clock::now();
      const auto prompts = make_prompts();  // every rank knows every prompt; it generates for its share
      std::vector<Candidate> mine;
      {
        TraceRange trace("generate");
        mine = generate_round(prompts);
      }
      gen_s = since(t);
      t = Clock::now();
      TraceRange score_trace("score");
      if (ref_) reference_score(mine, fwd_flops_per_token);  // sharded like generation
      double local_score_s = since(t);
      // The slowest rank's time is the round's: the ranks wait for each other at the gather.
      double phase_s[2] = {gen_s, local_score_s};
      if (comm.world() > 1) comm.all_reduce(phase_s, 2, ReduceOp::Max);
      gen_s = phase_s[0];
      t = Clock::now();
      cands = gather_candidates(comm, mine);
      for (auto& c : cands) {
        complete(c, prompts);
        // Prompt and generated tokens (the stop token included) went through the model.
        gen_tokens += static_cast<double>(c.prompt_tokens.size() + c.gen.size() + (c.stopped ? 1 : 0));
        if (ref_)
          score_flops += static_cast<double>(std::min<size_t>(cfg_.model.seq_len, c.prompt_tokens.size() + L_.max_new_tokens)) *
                         fwd_flops_per_token;
      }
      score_candidates(cands);
      std::vector<Tokens> existing;
      for (const auto& b : buffer_.samples()) existing.push_back(b.tokens);
      if (!task_)  // text dedup compares continuations; buffer docs hold prompt + continuation
        for (auto& e : existing) e.erase(e.begin(), e.begin() + std::min<size_t>(e.size(), L_.prompt_tokens));
      rejected_by = select_candidates(cands, L_, existing);
      if (L_.mode == "replace") buffer_.clear();
      for (const auto& c : cands) {
        ++generated;
        if (!c.accepted) continue;
        ++accepted;
        BufferSample b;
        b.tokens = c.prompt_tokens;
        b.tokens.insert(b.tokens.end(), c.gen.begin(), c.gen.end());
        if (task_) b.tokens.push_back('\n');
        b.score = c.mean_logprob;
        b.round = round_;
        buffer_.add(std::move(b));
      }
      score_s = phase_s[1] + since(t);
      const uint64_t fp = check_identical_across_ranks(comm, buffer_.to_json().dump(), "replay buffers");
      if (comm.world() > 1)
        logger()->info("round {}: the {} ranks' replay buffers are bitwise identical (fingerprint {:016x})", round_,
                       comm.world(), fp);
    } else {
      // Same FLOPs on real data: the generation this round would have done, as extra steps.
      const double would = static_cast<double>(L_.prompts) * L_.k *
                           (L_.prompt_tokens + L_.max_new_tokens) * fwd_flops_per_token;
      extra_steps = static_cast<int64_t>(std::llround(would / s_.step_flops()));
    }
    buffer_.start_round();

    auto t_train = Clock::now();
    publish_state();
    const int rows = syn_rows();
    const int64_t target = start + L_.round_steps + extra_steps;
    s_.run_until(target, rows ? &buffer_ : nullptr, rows);
    const double train_s = since(t_train);
    // A signal, or --stop-at inside the round: keep the state before the round.
    if (s_.stop_requested() || (s_.step() < target && s_.step() < s_.config().train.steps)) {
      s_.restore(snap);
      buffer_.from_json(buffer_before);
      syn_frac_ = syn_before;
      publish_state();
      save();
      logger()->warn("round {} interrupted: checkpointed the state before it (step {}); --resume redoes it",
                     round_, start);
      return false;
    }
    const EvalResult after = s_.evaluate_val();

    std::vector<Tokens> acc_gen, real_ref;
    std::vector<double> self_scores, ref_scores, ref_accepted, ref_rejected;
    std::vector<int> labels;
    for (const auto& c : cands) {
      if (c.accepted) acc_gen.push_back(c.gen);
      // One real continuation per prompt: its K candidates share it, and K copies would make the
      // real text look repetitive (distinct-n down, self-BLEU 1).
      if (!c.reference.empty() && c.sample == 0) real_ref.push_back(c.reference);
      if (c.verified >= 0) self_scores.push_back(c.mean_logprob), ref_scores.push_back(c.ref_logprob), labels.push_back(c.verified);
      if (std::isfinite(c.ref_logprob)) (c.accepted ? ref_accepted : ref_rejected).push_back(c.ref_logprob);
    }
    const double distinct_2 = distinct_n(acc_gen, 2), real_distinct_2 = distinct_n(real_ref, 2);
    const double self_bleu = acc_gen.size() > 1 ? mean_bleu(acc_gen, acc_gen, true) : 0.0;
    const double real_self_bleu = real_ref.size() > 1 ? mean_bleu(real_ref, real_ref, true) : 0.0;
    const double accept_rate = generated ? static_cast<double>(accepted) / static_cast<double>(generated) : 0.0;

    // Guards, each a reason to roll back: the real held-out loss, overall or on its hardest tail,
    // worse by more than guard_tolerance; the accepted samples' diversity below diversity_guard
    // of the real continuations' (distinct-2, and novelty = 1 - self-BLEU; only where the round
    // has real text to compare, not for tasks); the accept rate outside [accept_min, accept_max].
    const double tol = L_.guard_tolerance;
    std::vector<std::string> reasons;
    if (after.loss > before.loss * (1 + tol) || after.tail_loss > before.tail_loss * (1 + tol))
      reasons.push_back("val_loss");
    if (L_.diversity_guard > 0 && acc_gen.size() > 1 && real_ref.size() > 1 &&
        (distinct_2 < L_.diversity_guard * real_distinct_2 ||
         1 - self_bleu < L_.diversity_guard * (1 - real_self_bleu)))
      reasons.push_back("diversity");
    if (generated > 0 && (accept_rate < L_.accept_min || accept_rate > L_.accept_max)) reasons.push_back("accept_rate");
    if (fault_rollback_.count(round_)) reasons.push_back("fault_injection");
    const bool rolled_back = !reasons.empty() && L_.mode != "baseline";
    if (rolled_back) {
      std::string why;
      for (const auto& r : reasons) why += (why.empty() ? "" : ", ") + r;
      s_.restore(snap);
      buffer_.from_json(buffer_before);
      syn_frac_ = syn_before / 2;
      logger()->warn("round {} rolled back to step {} ({}): val loss {:.4f} -> {:.4f} (tail {:.4f} -> {:.4f}, "
                     "tolerance {}), distinct-2 {:.3f} vs real {:.3f}, self-BLEU {:.3f} vs real {:.3f}, "
                     "accept rate {:.2f}; syn_frac {} -> {}",
                     round_, start, why, before.loss, after.loss, before.tail_loss,
                     after.tail_loss, tol, distinct_2, real_distinct_2, self_bleu, real_self_bleu, accept_rate,
                     syn_before, syn_frac_);
    }
    const double step_flops = s_.step_flops();
    rec.update({
        {"step_end", s_.step()},
        {"seconds", {{"train", train_s}, {"generate", gen_s}, {"score", score_s}, {"round", since(t_round)}}},
        {"flops", {{"train", step_flops * static_cast<double>(L_.round_steps + extra_steps)},
                   {"generate", gen_tokens * fwd_flops_per_token},
                   // the self-scorers reuse the log-probs recorded while generating; ref_logprob
                   // runs a forward of the reference copy over every candidate
                   {"score", score_flops}}},
        {"generated", generated},
        {"accepted", accepted},
        {"accept_rate", accept_rate},
        {"accept_rate_in_bounds", generated == 0 || (accept_rate >= L_.accept_min && accept_rate <= L_.accept_max)},
        {"rejected_by", rejected_by},
        {"syn_frac", syn_before},
        {"syn_rows", rows * comm.world()},  // of the global batch
        {"buffer_tokens", buffer_.tokens()},
        // equal fingerprints: bitwise equal buffers (across runs, world sizes, resumes)
        {"buffer_fingerprint", fmt::format("{:016x}", buffer_fingerprint(buffer_.to_json().dump()))},
        {"val_loss_before", before.loss},
        {"val_loss", after.loss},
        {"val_loss_tail", after.tail_loss},
        {"distinct_1", distinct_n(acc_gen, 1)},
        {"distinct_2", distinct_2},
        {"distinct_3", distinct_n(acc_gen, 3)},
        {"self_bleu", self_bleu},
        {"real_distinct_2", real_distinct_2},
        {"real_self_bleu", real_self_bleu},
        {"committed", !rolled_back},
        {"rolled_back", rolled_back},
        {"guards_failed", reasons},  // why it was rolled back (baseline: recorded, never rolled back)
    });
    if (!labels.empty()) rec["probe_auroc"] = auroc(self_scores, labels);
    if (ref_ && L_.mode != "baseline") {
      const ReferenceEntry& e = ref_->for_round(round_);
      rec["ref"] = {{"kind", L_.ref}, {"round", e.round}, {"step", e.step}, {"file", e.file}, {"hash", e.hash}};
      rec["ref_score"] = {{"accepted_mean", mean_or_null(ref_accepted)}, {"rejected_mean", mean_or_null(ref_rejected)},
                          {"scored", ref_accepted.size() + ref_rejected.size()}};
      if (!labels.empty()) rec["probe_auroc_ref"] = auroc(ref_scores, labels);
    }
    if (s_.lead()) write_records(rec, cands);
    logger()->info("round {}: generated {}, accepted {} ({:.0f}%), buffer {} tokens, val {:.4f} -> {:.4f}{}",
                   round_, generated, accepted, generated ? 100.0 * accepted / generated : 0.0, buffer_.tokens(),
                   before.loss, after.loss, rolled_back ? " (rolled back)" : "");
    ++round_;
    publish_state();
    if (cfg_.checkpoint.every > 0 || s_.step() >= s_.last_step()) save();
    return s_.step() < s_.last_step();
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
      // generated bytes need not be valid UTF-8: replace, never throw
      samples_ << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
    samples_.flush();
  }

  TrainSession& s_;
  const Config& cfg_;
  const LoopSection& L_;
  std::set<int> fault_rollback_;
  ReplayBuffer buffer_;
  double syn_frac_;
  Tokenizer tok_;
  int round_ = 0;
  std::unique_ptr<Task> task_;
  std::unique_ptr<ReferenceStore> ref_;  // the ref_logprob scorer's reference weights
  std::vector<Problem> problems_;
  fs::path out_;
  std::ofstream rounds_, samples_;
  nlohmann::json published_;  // the state the next checkpoint records
};

}  // namespace

TrainSummary run_loop(TrainSession& session, std::set<int> fault_rollback_rounds) {
  Loop loop(session, std::move(fault_rollback_rounds));
  return loop.run();
}

}  // namespace ouro
