// Byte-pair merging of one piece by rank, with tiktoken's rule: repeatedly merge the adjacent
// pair whose concatenation has the lowest rank (the leftmost such pair on ties) until no
// adjacent pair is a token. Every single byte must have a rank, so any piece encodes.
#pragma once
#include <cstdint>
#include <vector>

#include "tokenizer/byte_table.h"

namespace ouro::tok {

// Appends the ids of piece[0..n) to out. Short pieces use a linear scan per merge (what
// tiktoken does); long ones a heap, O(n log n), so a megabyte of punctuation or invalid UTF-8
// in one piece stays fast. Both give the same ids (tests compare them).
void bpe_merge(const uint8_t* piece, size_t n, const ByteTable& ranks, std::vector<uint32_t>& out);

// The two strategies, exposed for tests.
void bpe_merge_linear(const uint8_t* piece, size_t n, const ByteTable& ranks,
                      std::vector<uint32_t>& out);
void bpe_merge_heap(const uint8_t* piece, size_t n, const ByteTable& ranks,
                    std::vector<uint32_t>& out);

}  // namespace ouro::tok
