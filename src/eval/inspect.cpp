// inspect_file(): what `moddit inspect` prints for a trajectory or a report.json.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/input_file.hpp"
#include "io/safetensors.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"

namespace moddit {

namespace {

// "0..11, 20, 30..49": ascending integers as runs.
std::string ranges(const std::vector<int>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (i) os << ", ";
    os << v[i];
    if (j > i) os << ".." << v[j];
    i = j + 1;
  }
  return os.str();
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

std::string inspect_trajectory(const std::string& path) {
  std::unique_ptr<TrajectorySource> src = open_trajectory(path);
  const TrajectoryInfo& info = src->info();
  SafetensorsReader reader(path);
  std::ostringstream os;
  os << "trajectory " << path << "\n";
  os << "  source:     " << info.source << "\n";
  os << "  tokens:     " << info.tokens.describe() << " (" << info.tokens.tokens_per_frame()
     << " per frame)\n";
  os << "  schedule:   T = " << info.num_steps << " steps; recorded steps (" << info.steps.size()
     << "): " << ranges(info.steps) << "\n";
  os << "  layers (" << info.layers.size() << "): " << ranges(info.layers) << "\n";
  os << "  per call:   batch " << info.batch << ", heads " << info.heads << ", head_dim "
     << info.head_dim << "\n";
  std::map<std::string, int> dtypes;
  std::map<std::string, int> shapes;
  uint64_t bytes = 0;
  for (const SafetensorsEntry& e : reader.tensors()) {
    ++dtypes[e.dtype_name];
    ++shapes[shape_text(e.shape)];
    bytes += e.nbytes();
  }
  os << "  tensors:    " << reader.tensors().size() << " (q/k/v per step and layer), "
     << std::fixed;
  os.precision(1);
  os << double(bytes) / (1024.0 * 1024.0) << " MiB\n";
  for (const auto& [s, c] : shapes) os << "    shape " << s << " (NHD) x " << c << "\n";
  for (const auto& [d, c] : dtypes) os << "    dtype " << d << " x " << c << "\n";
  os << "  metadata:\n";
  for (const auto& [k, v] : reader.metadata()) os << "    " << k << " = " << v << "\n";
  return os.str();
}

std::string num(const nlohmann::json& j, const char* key, const char* fmt = "%.4f") {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, j[key].get<double>());
  return buf;
}

// The report's objects and strings, read with their types checked: a report
// whose field has another type is refused with an error naming the field.
class ReportReader {
 public:
  explicit ReportReader(const std::string& path) : path_(path) {}

  // j[key] (an object), or an empty object when absent.
  nlohmann::json object(const nlohmann::json& j, const char* key, const std::string& where) const {
    if (!j.contains(key)) return nlohmann::json::object();
    MODDIT_CHECK(j[key].is_object(), path_, ": not a moddit report: '", where,
                 "' is not an object");
    return j[key];
  }
  // j[key] (a string), or `fallback` when absent.
  std::string text(const nlohmann::json& j, const char* key, const std::string& where,
                   const std::string& fallback) const {
    if (!j.contains(key)) return fallback;
    MODDIT_CHECK(j[key].is_string(), path_, ": not a moddit report: '", where,
                 "' is not a string");
    return j[key].get<std::string>();
  }
  // Every entry of j[key] (an array of objects; absent = none).
  std::vector<nlohmann::json> objects(const nlohmann::json& j, const char* key) const {
    std::vector<nlohmann::json> out;
    if (!j.contains(key)) return out;
    MODDIT_CHECK(j[key].is_array(), path_, ": not a moddit report: '", key,
                 "' is not an array");
    for (size_t i = 0; i < j[key].size(); ++i) {
      MODDIT_CHECK(j[key][i].is_object(), path_, ": not a moddit report: '", key, "[", i,
                   "]' is not an object");
      out.push_back(j[key][i]);
    }
    return out;
  }

 private:
  std::string path_;
};

}  // namespace

std::string inspect_report_text(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + std::string(e.what()).substr(0, 120));
  }
  MODDIT_CHECK(j.is_object() && j.contains("moddit_report") && j.contains("policies") &&
                   j["policies"].is_array(),
               path, ": not a moddit report (no 'moddit_report' / 'policies' keys)");
  const ReportReader r(path);
  std::ostringstream os;
  os << "report " << path << "\n";
  const nlohmann::json s = r.object(j, "settings", "settings");
  if (s.contains("trajectory")) {
    const nlohmann::json t = r.object(s, "trajectory", "settings.trajectory");
    os << "  trajectory: " << r.text(t, "source", "settings.trajectory.source", "?");
    const std::string label = r.text(t, "label", "settings.trajectory.label", "");
    if (!label.empty()) os << " (" << label << ")";
    os << "\n";
  }
  if (s.contains("target_density")) os << "  target density: " << s["target_density"] << "\n";
  if (s.contains("block_size"))
    os << "  block size " << s["block_size"] << ", eta " << num(s, "eta", "%g")
       << ", ridge_lambda " << num(s, "ridge_lambda", "%g") << ", means over steps >= "
       << num(s, "sparse_from_step", "%.0f") << "\n";
  if (s.contains("wall_seconds"))
    os << "  wall time " << num(s, "wall_seconds", "%.1f") << " s on " << num(s, "threads", "%.0f")
       << " thread(s), backend " << r.text(s, "backend", "settings.backend", "?") << "\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-28s %8s %8s %8s %8s %9s\n", "policy", "density", "recall",
                "rel_l2", "nae", "ms/call");
  os << line;
  const std::vector<nlohmann::json> policies = r.objects(j, "policies");
  for (size_t i = 0; i < policies.size(); ++i) {
    const nlohmann::json& p = policies[i];
    const std::string label = r.text(p, "label", "policies[" + std::to_string(i) + "].label", "?");
    std::snprintf(line, sizeof line, "  %-28s %8s %8s %8s %8s %9s\n", label.c_str(),
                  num(p, "density").c_str(), num(p, "recall").c_str(), num(p, "rel_l2").c_str(),
                  num(p, "nae").c_str(), num(p, "ms_per_call", "%.2f").c_str());
    os << line;
    // The equal-density view, where it differs from the policy's own means.
    const nlohmann::json a = r.object(p, "at_target", "policies[" + std::to_string(i) + "].at_target");
    const std::string basis =
        r.text(a, "basis", "policies[" + std::to_string(i) + "].at_target.basis", "");
    if (!basis.empty() && basis != "measured" && basis != "reference")
      os << "    at the target density: recall " << num(a, "recall") << ", rel_l2 "
         << num(a, "rel_l2") << " (" << basis << ", density " << num(a, "density") << ")\n";
  }
  const std::vector<nlohmann::json> pictures = r.objects(j, "pictures");
  for (size_t i = 0; i < pictures.size(); ++i)
    os << "  picture " << r.text(pictures[i], "file", "pictures[" + std::to_string(i) + "].file", "")
       << "\n";
  return os.str();
}

std::string inspect_file(const std::string& path) {
  // The first non-space byte (of the first 4 KiB) says what the file is; only a
  // regular file is opened.
  const int fd = open_input_file(path, "file");
  char head[4096];
  ssize_t got = 0;
  do got = ::read(fd, head, sizeof head);
  while (got < 0 && errno == EINTR);
  ::close(fd);
  MODDIT_CHECK(got >= 0, "file '", path, "': read failed: ", std::strerror(errno));
  char first = 0;
  for (ssize_t i = 0; i < got && !first; ++i)
    if (!std::isspace(static_cast<unsigned char>(head[i]))) first = head[i];
  // A safetensors file starts with its header length (8 bytes), whose first byte
  // can be '{' too: JSON is tried first and the trajectory reader second.
  const bool named_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  if (first == '{' || named_json) {
    const std::string text = read_input_file(path, "report");
    if (named_json || nlohmann::json::accept(text)) return inspect_report_text(text, path);
  }
  return inspect_trajectory(path);
}

}  // namespace moddit
