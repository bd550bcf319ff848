// Net descriptions in TOML (the format is documented in nets/zoo/README.md). Every
// rejection is one InputError line "source:line: problem", naming the layer and,
// for shapes that do not chain, both layers involved.
#pragma once

#include <string>
#include <string_view>

#include "nets/models.h"

namespace nbsgd::nets {

// `source` names the text in errors (a path, or "nets/zoo/lenet.toml" for a
// built-in); the net is called `default_name` unless the file sets `name`.
NetSpec parse_net_toml(std::string_view text, const std::string& source, const std::string& default_name);

// Reads and parses a file; the default name is the file's stem.
NetSpec load_net_file(const std::string& path);

}  // namespace nbsgd::nets
