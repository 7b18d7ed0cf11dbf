#include "alpa/cost/reshard_cost.h"

#include "alpa/cost/collective.h"

namespace alpa {

double reshard_time(const std::vector<ReshardStep>& steps, const ShardingSpec& from,
                    const Shape& shape, DType dtype, const MeshLinks& mesh,
                    double memory_bandwidth) {
  const MeshShape ms = mesh.shape();
  double t = 0;
  const double elem = static_cast<double>(dtype_bytes(dtype));
  ShardingSpec before = from.canonical(ms);
  for (size_t i = 0; i < steps.size(); ++i) {
    const ReshardStep& s = steps[i];
    const double in_bytes = static_cast<double>(num_elements(before.local_shape(shape, ms))) * elem;
    const double out_bytes =
        static_cast<double>(num_elements(s.after.local_shape(shape, ms))) * elem;
    switch (s.kind) {
      case ReshardKind::kAllReduce:
        t += collective_time(mesh, Collective::kAllReduce, s.axes, in_bytes);
        break;
      case ReshardKind::kReduceScatter:
        t += collective_time(mesh, Collective::kReduceScatter, s.axes, in_bytes);
        break;
      case ReshardKind::kAllGather:
        t += collective_time(mesh, Collective::kAllGather, s.axes, out_bytes);
        break;
      case ReshardKind::kAllToAll:
        t += collective_time(mesh, Collective::kAllToAll, s.axes, in_bytes);
        break;
      case ReshardKind::kMakePartial:
      case ReshardKind::kSlice:
        // Consecutive local steps are one pass: charged at the last.
        if (memory_bandwidth > 0 &&
            (i + 1 == steps.size() || (steps[i + 1].kind != ReshardKind::kSlice &&
                                       steps[i + 1].kind != ReshardKind::kMakePartial)))
          t += 2 * out_bytes / memory_bandwidth;
        break;
    }
    before = s.after;
  }
  return t;
}

}  // namespace alpa
