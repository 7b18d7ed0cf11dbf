#include "alpa/cost/collective.h"

#include <algorithm>

namespace alpa {

std::string_view collective_name(Collective c) {
  switch (c) {
    case Collective::kAllReduce: return "all-reduce";
    case Collective::kAllGather: return "all-gather";
    case Collective::kReduceScatter: return "reduce-scatter";
    case Collective::kAllToAll: return "all-to-all";
  }
  ALPA_UNREACHABLE();
  return "";
}

double collective_time(const MeshLinks& m, Collective c, AxisSet axes, double bytes) {
  ALPA_CHECK((axes & ~kBothAxes) == 0) << "axes bitmask " << int(axes) << " names no mesh axis";
  ALPA_CHECK(bytes >= 0) << "negative byte count " << bytes;
  int64_t n = 1;
  double alpha = 0;
  double beta = 0;
  for (int a = 0; a < 2; ++a) {
    if (!(axes & (1 << a)) || m.shape()[a] == 1) continue;
    n *= m.shape()[a];
    alpha = std::max(alpha, m.alpha[a]);
    beta = std::max(beta, m.beta[a]);
  }
  if (n == 1) return 0;
  // A measured table for this collective and group size (alpa profile) wins over alpha-beta.
  const std::string_view name = collective_name(c);
  for (const CollectiveTable& t : m.tables)
    if (t.group == n && t.collective == name && !t.points.empty())
      return std::max(0.0, interpolate(t.points, bytes));
  if ((axes & kBothAxes) == kBothAxes && m.shape()[0] > 1 && m.shape()[1] > 1) {
    // One flattened ring over every device of the mesh (MeshLinks::alpha_flat / beta_flat).
    alpha = m.alpha_flat;
    beta = m.beta_flat;
  }
  const double share = static_cast<double>(n - 1) / static_cast<double>(n);
  switch (c) {
    case Collective::kAllReduce: return alpha + beta * 2 * share * bytes;
    case Collective::kAllGather:
    case Collective::kReduceScatter:
    case Collective::kAllToAll: return alpha + beta * share * bytes;
  }
  ALPA_UNREACHABLE();
  return 0;
}

}  // namespace alpa
