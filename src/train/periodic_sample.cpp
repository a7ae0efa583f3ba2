#include "train/periodic_sample.h"

#include <vector>

#include "common/trace.h"
#include "model/generate.h"
#include "train/run_log.h"
#include "train/run_tokenizer.h"

namespace ouro {

void log_periodic_sample(GPT2& model, const Config& cfg, int64_t step) {
  if (cfg.sample.every <= 0 || step % cfg.sample.every != 0) return;
  const auto tok = load_run_tokenizer(cfg.data.tokenizer, cfg.model.vocab_size, {});
  if (!tok) return;
  std::vector<int> prompt{static_cast<int>(tok->eot_id())};
  for (uint32_t id : tok->encode(cfg.sample.prompt)) prompt.push_back(static_cast<int>(id));
  SampleOptions so;
  so.max_tokens = cfg.sample.max_tokens;
  so.temperature = static_cast<float>(cfg.sample.temperature);
  so.top_k = cfg.sample.top_k;
  so.top_p = static_cast<float>(cfg.sample.top_p);
  so.seed = static_cast<uint64_t>(cfg.train.seed) + static_cast<uint64_t>(step);
  so.stop_token = prompt[0];  // a document ends at <|endoftext|>
  TraceRange trace("sample");
  auto toks = generate(model, prompt, so);
  logger()->info("sample at step {}: {}", step, cfg.sample.prompt + decode_sample(*tok, toks));
}

}  // namespace ouro
