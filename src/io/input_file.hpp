#pragma once
// Opening the files moddit reads (trajectories, configs, reports): regular files
// only. A FIFO, device or directory is refused at once with an error naming it,
// instead of blocking on open() or reading forever; the file is opened without
// blocking and checked with fstat before anything is read.
#include <cstdint>
#include <string>

namespace moddit {

// A read-only descriptor of the regular file `path` (the caller closes it).
// Errors read "<what> '<path>': cannot open: <reason>" or "... : not a regular
// file (a FIFO)".
int open_input_file(const std::string& path, const std::string& what);

// The whole content of the regular file `path`, refused beyond `max_bytes`.
std::string read_input_file(const std::string& path, const std::string& what,
                            uint64_t max_bytes = uint64_t(1) << 30);

}  // namespace moddit
