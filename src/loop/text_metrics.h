// Measurements of generated text used by the loop's filters, guards and monitoring. All work on
// token sequences (ints), so they apply to byte-level and BPE models alike.
#pragma once
#include <cstdint>
#include <unordered_set>
#include <vector>

namespace ouro {

using Tokens = std::vector<int>;

// Distinct n-grams / total n-grams over all samples (Li et al. 2016's distinct-n); 0 when
// no sample has n tokens.
double distinct_n(const std::vector<Tokens>& samples, int n);

// Mean BLEU-4 (uniform weights, brevity penalty, +1 smoothing of the n-gram precisions) of each
// hypothesis against the set of references; with references = the samples themselves minus the
// hypothesis, this is self-BLEU (Zhu et al. 2018): higher means less diverse.
double mean_bleu(const std::vector<Tokens>& hyps, const std::vector<Tokens>& refs, bool exclude_self);

// The set of hashed n-grams of a sequence, and the Jaccard similarity of two such sets.
std::unordered_set<uint64_t> ngram_set(const Tokens& t, int n);
double jaccard(const std::unordered_set<uint64_t>& a, const std::unordered_set<uint64_t>& b);

// Largest fraction of a sequence's n-grams taken by one repeated n-gram (a degenerate loop
// "the the the ..." scores near 1); 0 when no n-gram occurs twice.
double max_repeat_fraction(const Tokens& t, int n);

// Area under the ROC curve of scores predicting binary labels (ties count half); 0.5 when a
// class is empty.
double auroc(const std::vector<double>& scores, const std::vector<int>& labels);

}  // namespace ouro
