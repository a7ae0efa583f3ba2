// A loader's position as JSON (checkpoints' state.json): read strictly, since a checkpoint is
// untrusted input.
#include <nlohmann/json.hpp>

#include "ouro/data.h"
#include "ouro/error.h"

namespace ouro {

void to_json(nlohmann::json& j, const LoaderPosition& p) {
  j = nlohmann::json{{"epoch", p.epoch}, {"cursor", p.cursor}};
}

void from_json(const nlohmann::json& j, LoaderPosition& p) {
  OURO_CHECK(j.is_object(), "loader position: expected an object, got {}", j.type_name());
  for (const char* key : {"epoch", "cursor"}) {
    OURO_CHECK(j.contains(key), "loader position: missing field '{}'", key);
    const auto& v = j.at(key);
    // A literal written from C++ is a signed json integer even when it is non-negative.
    OURO_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
               "loader position: field '{}' must be a non-negative integer, got {}", key,
               v.dump());
  }
  p.epoch = j.at("epoch").get<uint64_t>();
  p.cursor = j.at("cursor").get<uint64_t>();
}

}  // namespace ouro
