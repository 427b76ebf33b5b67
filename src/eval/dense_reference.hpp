#pragma once
// The dense reference of one trajectory call: the exact output and the row LSE
// on the host, which the evaluation's block statistics (dense_stats.hpp) start
// from. One object per evaluation keeps the backend's LSE buffer for every call.
#include <memory>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit {
namespace eval {

class DenseReference {
 public:
  // For calls of `batch` x `heads` x `tokens` rows on `backend` (kept by reference).
  DenseReference(Backend& backend, int64_t batch, int64_t heads, int64_t tokens);

  // Dense attention of (q, k, v) into `out` (all [B, N, H, D]), synchronised;
  // lse() then holds its [B, H, N] row LSE.
  void run(const HostTensor& q, const HostTensor& k, const HostTensor& v,
           const TokenLayout& tokens, int block_size, float eta, HostTensor& out);
  const float* lse() const { return lse_.data(); }

 private:
  Backend& backend_;
  std::shared_ptr<void> lse_dev_;
  std::vector<float> lse_;
};

}  // namespace eval
}  // namespace moddit
