#include "loop/round_phases.h"

#include <cmath>

#include "loop/reference.h"
#include "loop/text_metrics.h"

namespace ouro {
namespace {

double since(RoundClock::time_point t) { return std::chrono::duration<double>(RoundClock::now() - t).count(); }

nlohmann::json mean_or_null(const std::vector<double>& v) {
  if (v.empty()) return nullptr;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace

Guards check_guards(const LoopSection& L, const std::vector<Candidate>& cands, const Selected& sel,
                    const EvalResult& before, const EvalResult& after, bool forced) {
  std::vector<Tokens> acc_gen, real_ref;
  for (const auto& c : cands) {
    if (c.accepted) acc_gen.push_back(c.gen);
    // One real continuation per prompt: its K candidates share it, and K copies would make the
    // real text look repetitive (distinct-n down, self-BLEU 1).
    if (!c.reference.empty() && c.sample == 0) real_ref.push_back(c.reference);
  }
  Guards g;
  g.distinct_1 = distinct_n(acc_gen, 1);
  g.distinct_2 = distinct_n(acc_gen, 2);
  g.distinct_3 = distinct_n(acc_gen, 3);
  g.real_distinct_2 = distinct_n(real_ref, 2);
  g.self_bleu = acc_gen.size() > 1 ? mean_bleu(acc_gen, acc_gen, true) : 0.0;
  g.real_self_bleu = real_ref.size() > 1 ? mean_bleu(real_ref, real_ref, true) : 0.0;
  g.accept_rate = sel.generated ? static_cast<double>(sel.accepted) / static_cast<double>(sel.generated) : 0.0;
  const double tol = L.guard_tolerance;
  if (after.loss > before.loss * (1 + tol) || after.tail_loss > before.tail_loss * (1 + tol))
    g.failed.push_back("val_loss");
  if (L.diversity_guard > 0 && acc_gen.size() > 1 && real_ref.size() > 1 &&
      (g.distinct_2 < L.diversity_guard * g.real_distinct_2 ||
       1 - g.self_bleu < L.diversity_guard * (1 - g.real_self_bleu)))
    g.failed.push_back("diversity");
  if (sel.generated > 0 && (g.accept_rate < L.accept_min || g.accept_rate > L.accept_max))
    g.failed.push_back("accept_rate");
  if (forced) g.failed.push_back("fault_injection");
  g.rolled_back = !g.failed.empty() && L.mode != LoopMode::baseline;
  return g;
}

nlohmann::json round_record(const LoopSection& L, int round, const RoundStart& start, const Scored& scored,
                            const Selected& sel, const Trained& trained, const Guards& g, int64_t step_end,
                            double step_flops, int world, const BufferSummary& buffer) {
  std::vector<double> self_scores;
  std::vector<int> labels;
  for (const auto& c : scored.cands)
    if (c.verified >= 0) self_scores.push_back(c.mean_logprob), labels.push_back(c.verified);
  nlohmann::json rec = {{"round", round}, {"step_start", start.step}, {"mode", std::string(name_of(L.mode))}};
  rec.update({
      {"step_end", step_end},
      {"seconds", {{"train", trained.seconds}, {"generate", scored.generate_s}, {"score", sel.score_s},
                   {"round", since(start.started)}}},
      {"flops", {{"train", step_flops * static_cast<double>(L.round_steps + sel.extra_steps)},
                 {"generate", scored.gen_tokens * start.fwd_flops_per_token},
                 // the self-scorers reuse the log-probs recorded while generating; ref_logprob
                 // runs a forward of the reference copy over every candidate
                 {"score", scored.score_flops}}},
      {"generated", sel.generated},
      {"accepted", sel.accepted},
      {"accept_rate", g.accept_rate},
      {"accept_rate_in_bounds",
       sel.generated == 0 || (g.accept_rate >= L.accept_min && g.accept_rate <= L.accept_max)},
      {"rejected_by", sel.rejected_by},
      {"syn_frac", start.syn_frac},
      {"syn_rows", trained.rows * world},  // of the global batch
      {"buffer_tokens", buffer.tokens},
      // equal fingerprints: bitwise equal buffers (across runs, world sizes, resumes)
      {"buffer_fingerprint", buffer.fingerprint},
      {"val_loss_before", start.val.loss},
      {"val_loss", trained.val.loss},
      {"val_loss_tail", trained.val.tail_loss},
      {"distinct_1", g.distinct_1},
      {"distinct_2", g.distinct_2},
      {"distinct_3", g.distinct_3},
      {"self_bleu", g.self_bleu},
      {"real_distinct_2", g.real_distinct_2},
      {"real_self_bleu", g.real_self_bleu},
      {"committed", !g.rolled_back},
      {"rolled_back", g.rolled_back},
      {"guards_failed", g.failed},  // why it was rolled back (baseline: recorded, never rolled back)
  });
  if (!labels.empty()) rec["probe_auroc"] = auroc(self_scores, labels);
  return rec;
}

void add_reference_record(nlohmann::json& rec, const LoopSection& L, const std::vector<Candidate>& cands,
                          const ReferenceEntry& ref) {
  std::vector<double> ref_scores, ref_accepted, ref_rejected;
  std::vector<int> labels;
  for (const auto& c : cands) {
    if (c.verified >= 0) ref_scores.push_back(c.ref_logprob), labels.push_back(c.verified);
    if (std::isfinite(c.ref_logprob)) (c.accepted ? ref_accepted : ref_rejected).push_back(c.ref_logprob);
  }
  rec["ref"] = {{"kind", std::string(name_of(L.ref))}, {"round", ref.round}, {"step", ref.step}, {"file", ref.file}, {"hash", ref.hash}};
  rec["ref_score"] = {{"accepted_mean", mean_or_null(ref_accepted)}, {"rejected_mean", mean_or_null(ref_rejected)},
                      {"scored", ref_accepted.size() + ref_rejected.size()}};
  if (!labels.empty()) rec["probe_auroc_ref"] = auroc(ref_scores, labels);
}

}  // namespace ouro
