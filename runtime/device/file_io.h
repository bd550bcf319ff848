// Durable whole-file writes, shared by checkpoints and the run folder's text files.
//
// The file is written to "<path>.tmp.<pid>", every write() checked, fsync()ed,
// renamed over <path>, and then the folder is fsync()ed so the rename itself survives
// a power cut (the sequence of PyTorch DCP and llm.c). A reader therefore sees the
// old file or the new one, whole, even if the writer is killed at any instant.
// On any failure the temporary file is removed, an existing <path> is left as it
// was, and an InputError "cannot write <what> <path>: <cause>" is thrown (one line).
// Temporary files left behind by a writer that was killed (SIGKILL, power cut) are
// removed by the next write to the same path once their pid is no longer alive.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace nbsgd {

struct ByteSpan {
  const void* data;
  size_t bytes;
};

// Writes the spans in order as one file.
void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& chunks,
                           const std::string& what = "file");
void write_file_atomically(const std::string& path, std::string_view text, const std::string& what = "file");

// The temporary name this process uses for `path` (tests and messages).
std::string temp_path_for(const std::string& path);

}  // namespace nbsgd
