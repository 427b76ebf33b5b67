#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/input_file.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace {

// Headers beyond this are certainly not ours and would only waste memory
// (the reference implementation uses the same bound).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeInfo {
  const char* name;
  int size;
  bool supported;
  DType dtype;
};
constexpr DtypeInfo kDtypes[] = {
    {"F32", 4, true, DType::F32},      {"BF16", 2, true, DType::BF16},
    {"F16", 2, true, DType::F16},      {"F64", 8, false, DType::F32},
    {"I64", 8, false, DType::F32},     {"I32", 4, false, DType::F32},
    {"I16", 2, false, DType::F32},     {"I8", 1, false, DType::F32},
    {"U64", 8, false, DType::F32},     {"U32", 4, false, DType::F32},
    {"U16", 2, false, DType::F32},     {"U8", 1, false, DType::F32},
    {"BOOL", 1, false, DType::F32},    {"F8_E4M3", 1, false, DType::F32},
    {"F8_E5M2", 1, false, DType::F32},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void pread_all(int fd, void* dst, size_t size, uint64_t offset, const std::string& path) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    MODDIT_CHECK(n >= 0, path, ": read failed: ", std::strerror(errno));
    MODDIT_CHECK(n > 0, path, ": file is truncated (unexpected end of file at byte ", offset,
                 ")");
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

// A non-negative integer from a JSON value, or an error naming `what`.
uint64_t json_uint(const nlohmann::json& v, const std::string& path, const std::string& what) {
  MODDIT_CHECK(v.is_number_integer(), path, ": ", what, " is not an integer");
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  const int64_t s = v.get<int64_t>();
  MODDIT_CHECK(s >= 0, path, ": ", what, " is negative (", s, ")");
  return static_cast<uint64_t>(s);
}

}  // namespace

int64_t SafetensorsEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
  }
  throw Error("safetensors: unknown moddit dtype");
}

SafetensorsHeader parse_safetensors_header(const std::string& header, uint64_t data_size,
                                           const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": header is not valid JSON (" + e.what() + ")");
  }
  MODDIT_CHECK(j.is_object(), path, ": header is not a JSON object");
  SafetensorsHeader out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      MODDIT_CHECK(v.is_object(), path, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        MODDIT_CHECK(m.value().is_string(), path, ": __metadata__ value of '", m.key(),
                     "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    MODDIT_CHECK(v.is_object(), path, ": ", what, " is not a JSON object");
    MODDIT_CHECK(v.contains("dtype") && v["dtype"].is_string(), path, ": ", what,
                 " has no string 'dtype'");
    MODDIT_CHECK(v.contains("shape") && v["shape"].is_array(), path, ": ", what,
                 " has no array 'shape'");
    MODDIT_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() &&
                     v["data_offsets"].size() == 2,
                 path, ": ", what, " has no 'data_offsets' pair");
    SafetensorsEntry e;
    e.name = name;
    e.dtype_name = v["dtype"].get<std::string>();
    const DtypeInfo* dt = find_dtype(e.dtype_name);
    MODDIT_CHECK(dt != nullptr, path, ": ", what, " has unknown dtype '", e.dtype_name, "'");
    e.supported = dt->supported;
    e.dtype = dt->dtype;
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : v["shape"]) {
      const uint64_t dim = json_uint(d, path, what + " shape entry");
      MODDIT_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), path,
                   ": ", what, " shape entry too large");
      e.shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim) overflow = true;
      numel *= dim;
    }
    MODDIT_CHECK(!overflow, path, ": ", what, " shape ", shape_str(e.shape), " is too large");
    e.begin = json_uint(v["data_offsets"][0], path, what + " data_offsets[0]");
    e.end = json_uint(v["data_offsets"][1], path, what + " data_offsets[1]");
    MODDIT_CHECK(e.begin <= e.end, path, ": ", what, " data_offsets [", e.begin, ", ", e.end,
                 "] are reversed");
    MODDIT_CHECK(e.end <= data_size, path, ": ", what, " data_offsets [", e.begin, ", ", e.end,
                 "] go beyond the data section (", data_size, " bytes): file truncated?");
    const uint64_t expect = numel * static_cast<uint64_t>(dt->size);
    MODDIT_CHECK(e.nbytes() == expect, path, ": ", what, " shape ", shape_str(e.shape), " ",
                 e.dtype_name, " needs ", expect, " bytes but data_offsets span ", e.nbytes());
    out.tensors.push_back(std::move(e));
  }
  std::sort(out.tensors.begin(), out.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // The data section is covered exactly, in order (a header whose length is one
  // byte short would otherwise read every tensor one byte off).
  uint64_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : out.tensors) {
    MODDIT_CHECK(e.begin >= covered, path, ": tensors '", prev ? prev->name : "", "' and '", e.name,
                 "' overlap in the data section");
    MODDIT_CHECK(e.begin == covered, path, ": a gap of ", e.begin - covered,
                 " bytes in the data section before tensor '", e.name, "' (at byte ", covered,
                 ")");
    covered = e.end;
    prev = &e;
  }
  MODDIT_CHECK(covered == data_size, path, ": ", data_size - covered,
               " trailing bytes after the last tensor in the data section (", data_size,
               " bytes, tensors cover ", covered, "): header length or offsets are wrong");
  return out;
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  fd_ = open_input_file(path, "safetensors file");
  try {
    struct stat st {};
    MODDIT_CHECK(::fstat(fd_, &st) == 0, path, ": cannot stat: ", std::strerror(errno));
    open_header(static_cast<uint64_t>(st.st_size));
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsReader::SafetensorsReader(std::shared_ptr<const std::string> bytes,
                                     const std::string& name)
    : path_(name), bytes_(std::move(bytes)) {
  MODDIT_CHECK(bytes_ != nullptr, name, ": no bytes given");
  open_header(bytes_->size());
}

void SafetensorsReader::read_at(void* dst, size_t size, uint64_t offset) const {
  if (!bytes_) {
    pread_all(fd_, dst, size, offset, path_);
    return;
  }
  MODDIT_CHECK(offset <= bytes_->size() && size <= bytes_->size() - offset, path_,
               ": file is truncated (unexpected end of file at byte ", bytes_->size(), ")");
  if (size) std::memcpy(dst, bytes_->data() + offset, size);
}

void SafetensorsReader::open_header(uint64_t file_size) {
  const std::string& path = path_;
  MODDIT_CHECK(file_size >= 8, path, ": file too short for safetensors (", file_size,
               " bytes, the header length alone takes 8)");
  uint8_t len_bytes[8];
  read_at(len_bytes, 8, 0);
  const uint64_t header_len = read_le64(len_bytes);
  MODDIT_CHECK(header_len >= 2, path, ": header length ", header_len, " is too small");
  MODDIT_CHECK(header_len <= kMaxHeaderBytes, path, ": header length ", header_len,
               " bytes is implausibly large (limit ", kMaxHeaderBytes, ")");
  MODDIT_CHECK(header_len <= file_size - 8, path, ": header length ", header_len,
               " goes beyond the end of the file (", file_size, " bytes): truncated or not safetensors");
  std::string header(static_cast<size_t>(header_len), '\0');
  read_at(header.data(), header.size(), 8);
  data_start_ = 8 + header_len;
  SafetensorsHeader h = parse_safetensors_header(header, file_size - data_start_, path);
  entries_ = std::move(h.tensors);
  metadata_ = std::move(h.metadata);
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsReader::at(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  MODDIT_CHECK(e != nullptr, path_, ": no tensor named '", name, "'");
  return *e;
}

void SafetensorsReader::read_raw(const SafetensorsEntry& e, void* dst, size_t dst_size) const {
  MODDIT_CHECK(dst_size == e.nbytes(), path_, ": tensor '", e.name, "' has ", e.nbytes(),
               " bytes, destination has ", dst_size);
  read_at(dst, dst_size, data_start_ + e.begin);
}

std::vector<uint8_t> SafetensorsReader::read_bytes(const std::string& name) const {
  const SafetensorsEntry& e = at(name);
  MODDIT_CHECK(e.supported, path_, ": tensor '", name, "' has dtype ", e.dtype_name,
               "; moddit reads only F32, BF16 and F16");
  std::vector<uint8_t> out(static_cast<size_t>(e.nbytes()));
  read_raw(e, out.data(), out.size());
  return out;
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name) const {
  const SafetensorsEntry& e = at(name);
  const std::vector<uint8_t> raw = read_bytes(name);
  std::vector<float> out(static_cast<size_t>(e.numel()));
  if (e.dtype == DType::F32) {
    std::memcpy(out.data(), raw.data(), raw.size());
  } else {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      out[i] = e.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return out;
}

// ---- writer ----------------------------------------------------------------

SafetensorsWriter::SafetensorsWriter(const std::string& path,
                                     std::map<std::string, std::string> metadata)
    : path_(path), metadata_(std::move(metadata)) {}

SafetensorsWriter::~SafetensorsWriter() = default;  // an uncommitted AtomicFile cleans up

void SafetensorsWriter::declare(const std::string& name, DType dtype,
                                const std::vector<int64_t>& shape) {
  MODDIT_CHECK(!header_written_, path_, ": cannot declare tensor '", name,
               "' after data writing started");
  MODDIT_CHECK(!name.empty() && name != "__metadata__", path_, ": invalid tensor name '", name,
               "'");
  for (const auto& d : decls_)
    MODDIT_CHECK(d.name != name, path_, ": tensor '", name, "' declared twice");
  uint64_t n = static_cast<uint64_t>(dtype_size(dtype));
  for (int64_t d : shape) {
    MODDIT_CHECK(d >= 0, path_, ": tensor '", name, "' has negative dimension in shape ",
                 shape_str(shape));
    n *= static_cast<uint64_t>(d);
  }
  decls_.push_back({name, dtype, shape, n});
}

void SafetensorsWriter::start_data() {
  if (header_written_) return;
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    j["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const auto& d : decls_) {
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["dtype"] = safetensors_dtype_name(d.dtype);
    t["shape"] = d.shape;
    t["data_offsets"] = {offset, offset + d.nbytes};
    j[d.name] = t;
    offset += d.nbytes;
  }
  std::string header = j.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the reference
  // writer does; lets readers mmap tensors aligned).
  while (header.size() % 8 != 0) header.push_back(' ');
  uint8_t len[8];
  uint64_t L = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(L >> (8 * i));
  file_ = std::make_unique<AtomicFile>(path_);
  file_->write(len, 8);
  file_->write(header);
  header_written_ = true;
  while (current_ < decls_.size() && decls_[current_].nbytes == 0) ++current_;
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t size) {
  MODDIT_CHECK(!finished_, path_, ": write after finish()");
  start_data();
  MODDIT_CHECK(current_ < decls_.size(), path_, ": tensor '", name,
               "' written but every declared tensor is complete");
  const Decl& d = decls_[current_];
  MODDIT_CHECK(name == d.name, path_, ": tensor '", name, "' written out of order (expected '",
               d.name, "', tensors are written in declaration order)");
  MODDIT_CHECK(current_done_ + size <= d.nbytes, path_, ": tensor '", name, "' gets ",
               current_done_ + size, " bytes but its shape needs ", d.nbytes);
  file_->write(data, size);
  current_done_ += size;
  if (current_done_ == d.nbytes) {
    current_done_ = 0;
    ++current_;
    while (current_ < decls_.size() && decls_[current_].nbytes == 0) ++current_;
  }
}

void SafetensorsWriter::finish() {
  MODDIT_CHECK(!finished_, path_, ": finish() called twice");
  start_data();
  MODDIT_CHECK(current_ == decls_.size(), path_, ": finish() before tensor '",
               decls_[current_].name, "' was completely written");
  file_->commit();
  finished_ = true;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w(path, metadata);
  for (const auto& t : tensors) w.declare(t.name, t.dtype, t.shape);
  for (const auto& t : tensors) {
    uint64_t n = static_cast<uint64_t>(dtype_size(t.dtype));
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    if (n > 0) w.write(t.name, t.data, static_cast<size_t>(n));
  }
  w.finish();
}

}  // namespace moddit
