#include "alpa/runtime/sub_communicator.h"

#include <algorithm>

#include "alpa/support/check.h"

namespace alpa {

SubCommunicator::SubCommunicator(Communicator* base, std::vector<int> ranks)
    : base_(base), ranks_(std::move(ranks)) {
  ALPA_CHECK(base_ != nullptr) << "SubCommunicator needs a base communicator";
  std::vector<int> sorted = ranks_;
  std::sort(sorted.begin(), sorted.end());
  ALPA_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end())
      << "SubCommunicator ranks repeat";
  auto it = std::find(ranks_.begin(), ranks_.end(), base_->rank());
  ALPA_CHECK(it != ranks_.end()) << "SubCommunicator ranks do not include rank " << base_->rank();
  for (int r : ranks_) ALPA_CHECK(r >= 0 && r < base_->size()) << "rank " << r << " out of range";
  rank_ = static_cast<int>(it - ranks_.begin());
}

Result<std::vector<int>> SubCommunicator::translate(std::span<const int> group) const {
  std::vector<int> out;
  out.reserve(group.size());
  for (int r : group) {
    if (r < 0 || r >= size())
      return invalid_argument(cat("group rank ", r, " is outside a communicator of ", size()));
    out.push_back(ranks_[static_cast<size_t>(r)]);
  }
  return out;
}

Status SubCommunicator::all_reduce(float* data, int64_t count, std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(std::vector<int> g, translate(group));
  return base_->all_reduce(data, count, g);
}

Status SubCommunicator::all_gather(const float* in, int64_t count, float* out,
                                   std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(std::vector<int> g, translate(group));
  return base_->all_gather(in, count, out, g);
}

Status SubCommunicator::reduce_scatter(const float* in, int64_t count, float* out,
                                       std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(std::vector<int> g, translate(group));
  return base_->reduce_scatter(in, count, out, g);
}

Status SubCommunicator::all_to_all(const float* in, int64_t count, float* out,
                                   std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(std::vector<int> g, translate(group));
  return base_->all_to_all(in, count, out, g);
}

Status SubCommunicator::send(const float* data, int64_t count, int dst, int tag) {
  if (dst < 0 || dst >= size()) return invalid_argument(cat("send to rank ", dst, " of ", size()));
  return base_->send(data, count, ranks_[static_cast<size_t>(dst)], tag);
}

Status SubCommunicator::recv(float* data, int64_t count, int src, int tag) {
  if (src < 0 || src >= size())
    return invalid_argument(cat("recv from rank ", src, " of ", size()));
  return base_->recv(data, count, ranks_[static_cast<size_t>(src)], tag);
}

Status SubCommunicator::barrier(std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(std::vector<int> g, translate(group));
  return base_->barrier(g);
}

}  // namespace alpa
