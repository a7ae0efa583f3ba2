// Choices: a key whose value is one of a fixed set of words is an enum, parsed once where the
// value enters (the config, a flag) and compared as an enum everywhere it is used. Each choice
// enum E declares next to itself
//   constexpr std::array<std::string_view, N> choice_names(E)
// naming its values in declaration order (E's values are 0..N-1); this header turns that one
// table into parsing, printing and the list an error shows.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace ouro {

template <class E>
constexpr std::string_view name_of(E e) {
  return choice_names(E{})[static_cast<size_t>(e)];
}

// The value named `s`, or nullopt when no value has that name.
template <class E>
constexpr std::optional<E> parse_choice(std::string_view s) {
  const auto names = choice_names(E{});
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == s) return static_cast<E>(i);
  return std::nullopt;
}

// Every name, separated by `sep` ("cosine|linear|wsd|constant").
template <class E>
std::string choice_list(std::string_view sep = "|") {
  std::string out;
  for (std::string_view n : choice_names(E{})) {
    if (!out.empty()) out += sep;
    out += n;
  }
  return out;
}

}  // namespace ouro
