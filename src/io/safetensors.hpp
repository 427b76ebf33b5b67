#pragma once
// Our own reader and writer of the safetensors format:
//   [u64 little-endian header length L][L bytes of JSON header][data bytes]
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the start of the data) plus an optional "__metadata__"
// object of string -> string.
//
// moddit computes on F32, BF16 and F16. Tensors of the other standard safetensors
// dtypes (F64, I64, U8, ...) are parsed and size-checked, so a file holding them
// opens, but reading one through the DType API throws a clear error. A dtype name
// that is not a safetensors dtype at all makes the file invalid.
//
// Reading is lazy (pread per tensor), so opening a multi-GB trajectory costs
// only its header. Data is assumed little-endian, like every host we build for.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/atomic_file.hpp"
#include "moddit/tensor.hpp"

namespace moddit {

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;       // as in the file: "F32", "BF16", "I64", ...
  bool supported = false;       // dtype is F32, BF16 or F16
  DType dtype = DType::F32;     // meaningful only when supported
  std::vector<int64_t> shape;   // [] is a scalar
  uint64_t begin = 0, end = 0;  // byte range, relative to the data section
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// A parsed and validated header. As the reference implementation
// (huggingface/safetensors) checks, the tensors, in data-offset order, cover the
// data section exactly: the first begins at 0, each begins where the previous
// ends (no gap, no overlap) and the last ends at the end of the data (no
// trailing bytes); each spans exactly its shape's bytes.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;
};
// `json` is the header text, `data_size` the bytes after it; errors name `name`.
// A plain function of its inputs (fuzzed in CI).
SafetensorsHeader parse_safetensors_header(const std::string& json, uint64_t data_size,
                                           const std::string& name);

class SafetensorsReader {
 public:
  // Opens and validates the whole header (throws moddit::Error naming the file).
  // Only a regular file is opened (a FIFO or device is refused at once).
  explicit SafetensorsReader(const std::string& path);
  // The same over a whole file's bytes in memory; `name` stands for the path.
  SafetensorsReader(std::shared_ptr<const std::string> bytes, const std::string& name);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Every tensor, in data-offset order.
  const std::vector<SafetensorsEntry>& tensors() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;   // null if absent
  const SafetensorsEntry& at(const std::string& name) const;     // throws if absent

  // Raw bytes of a tensor into dst (dst_size must equal e.nbytes()).
  void read_raw(const SafetensorsEntry& e, void* dst, size_t dst_size) const;
  // Raw bytes of a tensor of a supported dtype (throws for the others).
  std::vector<uint8_t> read_bytes(const std::string& name) const;
  // Any supported dtype converted to f32.
  std::vector<float> read_f32(const std::string& name) const;

 private:
  void open_header(uint64_t file_size);
  void read_at(void* dst, size_t size, uint64_t offset) const;

  std::string path_;
  int fd_ = -1;
  std::shared_ptr<const std::string> bytes_;  // instead of fd_: an in-memory file
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// The safetensors spelling of a moddit dtype: "F32", "BF16", "F16".
const char* safetensors_dtype_name(DType dtype);

// Streaming writer: declare every tensor first (the header precedes the data),
// then write each tensor's bytes in declaration order, in one or more chunks,
// then finish(). The file appears atomically at finish(); destroying an
// unfinished writer leaves nothing behind.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void declare(const std::string& name, DType dtype, const std::vector<int64_t>& shape);
  // Appends bytes of the current tensor (the first declared one not yet complete).
  // Calling with a name checks it is the expected tensor.
  void write(const std::string& name, const void* data, size_t size);
  void finish();

 private:
  struct Decl {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
  };
  void start_data();

  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<Decl> decls_;
  size_t current_ = 0;
  uint64_t current_done_ = 0;
  bool header_written_ = false, finished_ = false;
  std::unique_ptr<AtomicFile> file_;
};

// Convenience: writes a set of in-memory tensors in one go.
struct SafetensorsTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // numel * dtype_size bytes
};
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace moddit
