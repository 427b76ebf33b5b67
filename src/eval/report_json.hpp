#pragma once
// Building report.json (see report_json.cpp) with the list of pictures written.
#include <string>
#include <vector>

#include "moddit/eval.hpp"

namespace moddit {
namespace eval {

struct PictureInfo {
  std::string file;                 // name inside the report directory
  std::string what;                 // one line
  int step = -1, layer = -1, head = -1;
  std::vector<std::string> panels;  // left to right (heatmaps) or series legend (plots)
};

std::string report_json_text(const EvalResult& result, const std::vector<PictureInfo>& pictures);

}  // namespace eval
}  // namespace moddit
