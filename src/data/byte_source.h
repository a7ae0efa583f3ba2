// The bytes of one `ouro prepare` input, decompressed as they are read: a file, standard input
// ("-"), or a .gz (zlib) or .zst (libzstd) file, chosen by the name's ending. Memory holds the
// decompressor's window only. Errors name the input.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace ouro::data {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Up to n bytes into buf; 0 at the end. A corrupt or truncated compressed stream is an error.
  virtual size_t read(char* buf, size_t n) = 0;
  const std::string& name() const { return name_; }

 protected:
  explicit ByteSource(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};

std::unique_ptr<ByteSource> open_source(const std::string& path);

// Lines of a source, '\n' removed (and one '\r' before it); the last line may lack its '\n'.
class LineReader {
 public:
  explicit LineReader(ByteSource& src) : src_(src) {}
  // False at the end; line numbers count from 1.
  bool next(std::string& line);
  size_t line_number() const { return line_; }

 private:
  ByteSource& src_;
  std::string buf_;
  size_t pos_ = 0, line_ = 0;
  bool eof_ = false;
};

}  // namespace ouro::data
