// The configuration keys as documentation: README.md's key table is generated from the schema that
// parsing and validation use (src/config/config.cpp), and test_config checks the README says the same.
#pragma once
#include <string>

namespace ouro {

// Every key as a Markdown table: key, type, allowed values, default, one line on what it sets.
std::string config_keys_markdown();

}  // namespace ouro
