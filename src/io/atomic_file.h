// Crash-safe file and directory replacement. A reader (or a resumed run) sees either the old
// content or the complete new content, never a torn file: data goes to a temporary in the same
// directory (same filesystem, so rename is atomic), is fsynced, renamed over the target, and the
// directory is fsynced so the rename itself survives a power loss.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ouro::io {

struct ByteSpan {
  const void* data = nullptr;
  size_t size = 0;
};

// Writes the concatenation of pieces to path atomically. Errors name path.
void write_file_atomic(const std::filesystem::path& path, const std::vector<ByteSpan>& pieces);
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

// fsync a directory so that entries created, renamed or removed in it are durable.
void fsync_dir(const std::filesystem::path& dir);

// Moves directory src to dst, atomically replacing dst if it exists (the old dst is deleted),
// then fsyncs dst's parent. src and dst must be in the same parent directory's filesystem.
// Where the kernel cannot swap directories atomically, the old dst is first renamed aside to
// ".tmp-old-<name>-<pid>" so that a crash leaves only ".tmp-*" debris for the next save to clean.
void replace_dir(const std::filesystem::path& src, const std::filesystem::path& dst);

// Creates dir and its missing parents. Errors start with `what` (e.g. "run.out_dir 'x'") and say
// why in words: an empty path, a component that is a regular file, permissions.
void create_dirs(const std::filesystem::path& dir, const std::string& what);

}  // namespace ouro::io
