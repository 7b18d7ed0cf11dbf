// SubCommunicator: a Communicator over a subset of another communicator's ranks, renumbered
// 0..n-1 (a pipeline stage's mesh inside the job's world). Local rank i is the base's rank
// `ranks[i]`; groups, sources and destinations are translated and passed to the base, so
// stages running collectives at the same time use disjoint groups of the base.
//
// Invariants: ranks are distinct, in range for the base, and include the base's own rank.
// Not an owner: the base must outlive it.
#pragma once

#include <vector>

#include "alpa/runtime/communicator.h"

namespace alpa {

class SubCommunicator : public Communicator {
 public:
  // CHECKs the invariants.
  SubCommunicator(Communicator* base, std::vector<int> ranks);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(ranks_.size()); }
  int base_rank(int local) const { return ranks_[static_cast<size_t>(local)]; }

  Status all_reduce(float* data, int64_t count, std::span<const int> group) override;
  Status all_gather(const float* in, int64_t count, float* out,
                    std::span<const int> group) override;
  Status reduce_scatter(const float* in, int64_t count, float* out,
                        std::span<const int> group) override;
  Status all_to_all(const float* in, int64_t count, float* out,
                    std::span<const int> group) override;
  Status send(const float* data, int64_t count, int dst, int tag) override;
  Status recv(float* data, int64_t count, int src, int tag) override;
  Status barrier(std::span<const int> group) override;

 private:
  Result<std::vector<int>> translate(std::span<const int> group) const;

  Communicator* base_;
  std::vector<int> ranks_;
  int rank_ = 0;
};

}  // namespace alpa
