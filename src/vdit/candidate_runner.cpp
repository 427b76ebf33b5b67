#include "vdit/candidate_runner.hpp"

#include "moddit/error.hpp"

namespace moddit {
namespace vdit {

namespace {

bool same_shape(const int64_t a[4], const int64_t b[4]) {
  return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

}  // namespace

CandidateRunner::CandidateRunner(Backend& backend, const TokenLayout& tokens, int block_size,
                                 size_t sources)
    : backend_(backend),
      tokens_(tokens),
      block_size_(block_size),
      host_(backend.device() == Device::CPU),
      staged_(sources) {}

void CandidateRunner::load(size_t s, const HostTensor& q, const HostTensor& k,
                           const HostTensor& v) {
  MODDIT_CHECK(s < staged_.size(), "search: source ", s, " out of ", staged_.size());
  MODDIT_CHECK(q.dtype == DType::F32 && k.dtype == DType::F32 && v.dtype == DType::F32,
               "search: candidate inputs must be f32 on the host");
  MODDIT_CHECK(same_shape(k.shape, q.shape) && same_shape(v.shape, q.shape),
               "search: k [", k.shape[0], ", ", k.shape[1], ", ", k.shape[2], ", ", k.shape[3],
               "] and v [", v.shape[0], ", ", v.shape[1], ", ", v.shape[2], ", ", v.shape[3],
               "] must have q's shape [", q.shape[0], ", ", q.shape[1], ", ", q.shape[2], ", ",
               q.shape[3], "]");
  Staged& st = staged_[s];
  st.q = &q;
  st.k = &k;
  st.v = &v;
  if (host_) return;
  const size_t bytes = size_t(q.numel()) * sizeof(uint16_t);
  if (bytes != st.bytes || !same_shape(st.shape, q.shape)) {
    st.dq = backend_.allocate(bytes);
    st.dk = backend_.allocate(bytes);
    st.dv = backend_.allocate(bytes);
    st.dout = backend_.allocate(bytes);
    st.bytes = bytes;
    for (int i = 0; i < 4; ++i) st.shape[i] = q.shape[i];
  }
  scratch_.resize(size_t(q.numel()));
  const std::pair<const HostTensor*, void*> copies[] = {
      {&q, st.dq.get()}, {&k, st.dk.get()}, {&v, st.dv.get()}};
  for (const auto& [t, dst] : copies) {
    const float* src = t->f32();
    for (size_t i = 0; i < scratch_.size(); ++i) scratch_[i] = f32_to_bf16(src[i]);
    backend_.copy_from_host(dst, scratch_.data(), bytes);
  }
}

void CandidateRunner::run(size_t s, const BlockLayout* layout, HostTensor& out) {
  MODDIT_CHECK(s < staged_.size() && staged_[s].q, "search: source ", s, " has no inputs");
  const Staged& st = staged_[s];
  const int64_t B = st.q->shape[0], N = st.q->shape[1], H = st.q->shape[2], D = st.q->shape[3];
  if (out.dtype != DType::F32 || !same_shape(out.shape, st.q->shape))
    out = HostTensor(DType::F32, B, N, H, D);
  AttentionCall call;
  call.tokens = &tokens_;
  call.block_size = block_size_;
  call.layout = layout;
  if (host_) {
    call.q = st.q->view();
    call.k = st.k->view();
    call.v = st.v->view();
    call.out = out.view();
    backend_.attention(call);
    return;
  }
  const Device dev = backend_.device();
  const int idx = backend_.device_index();
  call.q = make_view(st.dq.get(), DType::BF16, Layout::NHD, B, N, H, D, dev, idx);
  call.k = make_view(st.dk.get(), DType::BF16, Layout::NHD, B, N, H, D, dev, idx);
  call.v = make_view(st.dv.get(), DType::BF16, Layout::NHD, B, N, H, D, dev, idx);
  call.out = make_view(st.dout.get(), DType::BF16, Layout::NHD, B, N, H, D, dev, idx);
  backend_.attention(call);
  scratch_.resize(size_t(out.numel()));
  backend_.copy_to_host(scratch_.data(), st.dout.get(), st.bytes);  // waits for the stream
  float* dst = out.f32();
  for (size_t i = 0; i < scratch_.size(); ++i) dst[i] = bf16_to_f32(scratch_[i]);
}

}  // namespace vdit
}  // namespace moddit
