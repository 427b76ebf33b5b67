#pragma once
// Runs the search's candidate layouts on any backend. The search keeps Q/K/V and
// the outputs it scores on the host in f32; on the CPU backend the calls read and
// write those directly. On a GPU backend each source's Q/K/V are uploaded once per
// (step, layer) in bf16 (the CUDA kernels' input) and every output comes back
// converted to f32, so the losses carry bf16 rounding of Q/K/V and O (an nMSE floor
// of about 1e-5, far below the loss differences the decision acts on).
#include <memory>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/host_tensor.hpp"

namespace moddit {
namespace vdit {

class CandidateRunner {
 public:
  CandidateRunner(Backend& backend, const TokenLayout& tokens, int block_size, size_t sources);

  // Makes source `s`'s Q/K/V (host f32, [B, N, H, D]) the inputs of its next runs.
  void load(size_t s, const HostTensor& q, const HostTensor& k, const HostTensor& v);
  // out = attention of source s's inputs under `layout` (null: dense), host f32.
  void run(size_t s, const BlockLayout* layout, HostTensor& out);

 private:
  struct Staged {
    const HostTensor *q = nullptr, *k = nullptr, *v = nullptr;
    std::shared_ptr<void> dq, dk, dv, dout;   // device copies (GPU backends)
    size_t bytes = 0;                          // of one bf16 tensor
    int64_t shape[4] = {0, 0, 0, 0};
  };
  Backend& backend_;
  const TokenLayout& tokens_;
  int block_size_;
  bool host_;
  std::vector<Staged> staged_;
  std::vector<uint16_t> scratch_;
};

}  // namespace vdit
}  // namespace moddit
