// Moving one round's candidates between the ranks of a data-parallel loop. Each rank generates
// (and reference-scores) the candidates of its share of the prompts; afterwards every rank holds
// all of them in the order a one-rank run has them, so that every rank runs the same selection
// on the same list and keeps a bitwise identical replay buffer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loop/selection.h"
#include "ouro/comm.h"

namespace ouro {

// Prompt indices rank r of `world` generates for: r, r + world, r + 2*world, ...
std::vector<int> prompts_of_rank(int n_prompts, int rank, int world);

// Only what generation and reference scoring produce travels: prompt, sample, stopped, the
// generated tokens, their log-probs and the reference score. Everything else (the prompt's
// tokens, its real continuation, a task's answer and verdict) each rank derives from the prompt.
std::string pack_candidates(const std::vector<Candidate>& cands);
std::vector<Candidate> unpack_candidates(const std::string& bytes);

// Every rank's candidates on every rank, sorted by (prompt, sample). Byte counts cross first
// (an all-gather), then each rank's bytes by a broadcast from it, in rank order.
std::vector<Candidate> gather_candidates(Communicator& comm, const std::vector<Candidate>& mine);

// FNV-1a of the bytes.
uint64_t buffer_fingerprint(const std::string& bytes);

// Fails on every rank unless `bytes` is the same on all of them (a fingerprint broadcast from
// rank 0, the disagreement reduced), naming `what`. Returns the fingerprint.
uint64_t check_identical_across_ranks(Communicator& comm, const std::string& bytes, const std::string& what);

}  // namespace ouro
