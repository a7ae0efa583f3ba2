// The [dist] section's checks and the one host:port parser (config, rendezvous and the
// environment's addresses all go through it).
#include <cmath>
#include <cstdlib>

#include "ouro/config_dist.h"
#include "ouro/error.h"

namespace ouro {

std::optional<HostPort> split_host_port(const std::string& s, std::string* why) {
  auto bad = [&](std::string reason) -> std::optional<HostPort> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return bad("expected host:port");
  HostPort hp;
  hp.host = s.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);  // [v6addr]:port
  const std::string port = s.substr(colon + 1);
  // Digits only, at most 5 of them: strtol would take " 80" or "+80", and overflow on long ones.
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return bad("port '" + port + "' is not in 1..65535");
  const long p = std::strtol(port.c_str(), nullptr, 10);
  if (p < 1 || p > 65535) return bad("port '" + port + "' is not in 1..65535");
  hp.port = static_cast<int>(p);
  return hp;
}

HostPort parse_host_port(const std::string& s, const std::string& what) {
  std::string why;
  const auto hp = split_host_port(s, &why);
  if (!hp) fail("{} '{}': {}", what, s, why);
  return *hp;
}

void DistConfig::validate(const std::string& where) const {
  auto need = [&](bool ok, const char* key, const std::string& why) {
    if (!ok) fail("{}: key '{}' {}", where, key, why);
  };
  // Plain ranges (timeout_s > 0, bucket_mb >= 0) are checked from the schema with every key's;
  // these are what its words say beyond them.
  need(zero == 0 || zero == 1, "dist.zero", "must be 0 or 1");
  need(std::isfinite(bucket_mb), "dist.bucket_mb", "must be finite (0: one exchange)");
  need(init != DistInit::file || !init_path.empty(), "dist.init_path", "must be set when dist.init = file");
  if (init == DistInit::tcp)
    need(split_host_port(init_addr).has_value(), "dist.init_addr",
         "must be host:port with a port in 1..65535 when dist.init = tcp (got '" + init_addr + "')");
}

}  // namespace ouro
