#include "eval/dense_reference.hpp"

#include "moddit/error.hpp"

namespace moddit {
namespace eval {

DenseReference::DenseReference(Backend& backend, int64_t batch, int64_t heads, int64_t tokens)
    : backend_(backend), lse_(static_cast<size_t>(batch * heads * tokens)) {
  lse_dev_ = backend_.allocate(lse_.size() * sizeof(float));
}

void DenseReference::run(const HostTensor& q, const HostTensor& k, const HostTensor& v,
                         const TokenLayout& tokens, int block_size, float eta, HostTensor& out) {
  MODDIT_CHECK(static_cast<size_t>(q.shape[0] * q.shape[2] * q.shape[1]) == lse_.size(),
               "dense reference: q has ", q.shape[0], " x ", q.shape[1], " x ", q.shape[2],
               " (batch x tokens x heads) rows, the reference was made for ", lse_.size());
  AttentionCall call;
  call.q = q.view();
  call.k = k.view();
  call.v = v.view();
  call.out = out.view();
  call.tokens = &tokens;
  call.block_size = block_size;
  call.lse = static_cast<float*>(lse_dev_.get());
  call.eta = eta;
  backend_.attention(call);
  backend_.synchronize();
  backend_.copy_to_host(lse_.data(), lse_dev_.get(), lse_.size() * sizeof(float));
}

}  // namespace eval
}  // namespace moddit
