#include "alpa/cost/compute.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

DeviceSpec v100() {
  return cluster_preset("p3.16xlarge").value().device;
}

TEST(Compute, ComputeBoundUsesThePeakOfTheDType) {
  DeviceSpec d = v100();
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, 15.7e12, 1e3), 1.0);
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF16, 125e12, 1e3), 1.0);
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kBF16, 125e12, 1e3), 1.0);
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kI32, 15.7e12, 1e3), 1.0);
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF16, 15.7e12, 0), 15.7 / 125);
}

TEST(Compute, MemoryBound) {
  DeviceSpec d = v100();
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, 1e6, 900e9), 1.0);
  // Elementwise add of two 1 GiB f32 tensors: 3 GiB moved, 2^28 FLOPs -> bound by memory.
  const double bytes = 3.0 * (1 << 30);
  const double flops = 1 << 28;
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, flops, bytes), bytes / 900e9);
}

TEST(Compute, IsTheMaxOfBothTerms) {
  DeviceSpec d;
  d.name = "toy";
  d.peak_flops_f32 = 1e12;
  d.peak_flops_f16 = 4e12;
  d.memory_bandwidth = 1e11;
  for (double flops : {0.0, 1e9, 1e12, 3e12}) {
    for (double bytes : {0.0, 1e8, 1e11, 5e11}) {
      EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, flops, bytes),
                       std::max(flops / 1e12, bytes / 1e11));
      EXPECT_DOUBLE_EQ(compute_time(d, DType::kF16, flops, bytes),
                       std::max(flops / 4e12, bytes / 1e11));
    }
  }
  EXPECT_EQ(compute_time(d, DType::kF32, 0, 0), 0.0);
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

TEST(Compute, ProfiledEfficiencyScalesThePeakByTheOpsSize) {
  DeviceSpec d = cluster_preset("p3.16xlarge").value().device;
  d.gemm_efficiency = {{1e9, 0.25}, {1e12, 0.5}};
  // A large op at half the peak; a small one at a quarter; in between, interpolated.
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, 15.7e12, 1), 2.0);
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, 1e8, 1), 1e8 / (15.7e12 * 0.25));
  const double mid = 0.25 + 0.25 * (5.005e11 - 1e9) / (1e12 - 1e9);
  EXPECT_NEAR(compute_time(d, DType::kF32, 5.005e11, 1), 5.005e11 / (15.7e12 * mid), 1e-15);
  // Memory-bound ops stay memory-bound.
  EXPECT_DOUBLE_EQ(compute_time(d, DType::kF32, 0, 9e11), 1.0);
}

}  // namespace
}  // namespace alpa
