#pragma once
// Small facts about files that the readers and writers of src/io share.
#include <sys/types.h>

#include <string>

namespace moddit {

// "a directory", "a FIFO", "a character device", ... for a non-regular st_mode.
const char* file_kind(mode_t mode);

// The process umask, read without changing it: umask(2) can only be read by
// setting it, which would race with other threads creating files.
mode_t current_umask();

// Makes renames in `dir` durable (fsync of the directory); failure is not fatal
// (some file systems refuse fsync on directories; the data is synced already).
void sync_directory(const std::string& dir);

}  // namespace moddit
