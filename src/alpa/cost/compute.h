// Compute cost: the roofline time of one piece of work on one device.
//
// compute_time = max(flops / peak(dtype), bytes / memory_bandwidth): the work is bound either
// by arithmetic or by moving its bytes through device memory, whichever is slower. f16/bf16 use
// the tensor-core peak, everything else the f32 peak (cluster.h: peak_flops).
//
// A profiled device (DeviceSpec::gemm_efficiency, written by `alpa profile`) reaches only a
// fraction of its peak, interpolated piecewise-linearly by the op's FLOPs (Alpa §3.5, option
// B); without a table the peak is reached. It is not per-op FLOP counting (callers pass flops
// and bytes).
#pragma once

#include "alpa/cluster/cluster.h"
#include "alpa/ir/types.h"

namespace alpa {

// Seconds to do `flops` floating-point operations (>= 0) moving `bytes` (>= 0) through the
// memory of device `d` (positive peaks and bandwidth, as validate_cluster ensures).
double compute_time(const DeviceSpec& d, DType dtype, double flops, double bytes);

}  // namespace alpa
