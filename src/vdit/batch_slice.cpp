// drop_batch_items(): calibration on batch items that the evaluation does not use.
#include <cstring>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"

namespace moddit {

namespace {

class BatchSlice : public TrajectorySource {
 public:
  BatchSlice(std::unique_ptr<TrajectorySource> inner, int first)
      : inner_(std::move(inner)), first_(first), info_(inner_->info()) {
    MODDIT_CHECK(first >= 0 && first < info_.batch, "batch items from ", first,
                 ": the trajectory has only ", info_.batch, " (", info_.source, ")");
    info_.batch -= first;
    if (first > 0) info_.source += " [batch items " + std::to_string(first) + "+]";
  }
  const TrajectoryInfo& info() const override { return info_; }
  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    inner_->load(step, layer, q, k, v);
    if (first_ == 0) return;
    for (HostTensor* t : {&q, &k, &v}) {
      HostTensor out(t->dtype, t->shape[0] - first_, t->shape[1], t->shape[2], t->shape[3]);
      const size_t item = out.bytes.size() / size_t(out.shape[0]);
      std::memcpy(out.bytes.data(), t->bytes.data() + item * size_t(first_), out.bytes.size());
      *t = std::move(out);
    }
  }

 private:
  std::unique_ptr<TrajectorySource> inner_;
  int first_;
  TrajectoryInfo info_;
};

}  // namespace

std::unique_ptr<TrajectorySource> drop_batch_items(std::unique_ptr<TrajectorySource> source,
                                                   int first_item) {
  if (first_item == 0) return source;
  return std::make_unique<BatchSlice>(std::move(source), first_item);
}

}  // namespace moddit
