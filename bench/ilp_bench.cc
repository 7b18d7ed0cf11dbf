// Benchmark: auto-sharding ILP size and time on the full GPT training-step graphs (GPT-3 1.3B,
// 6.7B, 39B; AdamW, fp16, one micro-batch of 16 sequences) on a 2x4 mesh of p3.16xlarge
// (8x V100). Per row: graph nodes, strategy choices, ILP nodes (after merging repeated
// layers) and the core left after exact reductions, CBC variables and constraints, and the
// time of each phase. With --no-merge, also solves without merging repeated layers.
//
// Usage: build/release/bench/ilp_bench [--no-merge] [--record]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/cluster/cluster.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/models/gpt.h"

using namespace alpa;

int main(int argc, char** argv) {
  bool record = false, no_merge = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--record"))
      record = true;
    else if (!std::strcmp(argv[i], "--no-merge"))
      no_merge = true;
    else {
      std::fprintf(stderr, "usage: %s [--no-merge] [--record]\n", argv[0]);
      return 2;
    }
  }
  Cluster c = with_devices(cluster_preset("p3.16xlarge").value(), 8).value();
  MeshLinks mesh = mesh_links(c, {2, 4}).value();
  std::ostringstream table;
  table << "| model | merge layers | graph nodes | choices | ILP nodes | core | variables | "
           "constraints | build graph s | strategies s | costs s | ILP s | total s | optimal | "
           "predicted step s |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const char* size : {"1.3b", "6.7b", "39b"}) {
    const std::vector<bool> modes =
        no_merge ? std::vector<bool>{true, false} : std::vector<bool>{true};
    for (bool merge : modes) {
      GptConfig g = gpt_preset(size).value();
      g.batch = 16;
      const auto t0 = std::chrono::steady_clock::now();
      TrainStep ts = build_train_step(build_gpt(g).value(), {}).value();
      const double build_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      AutoShardingOptions o;
      o.merge_repeated_layers = merge;
      o.ilp.time_limit_s = 120;
      Result<ShardingPlan> p = auto_shard(ts.graph, mesh, c.device, o);
      if (!p.ok()) {
        std::fprintf(stderr, "%s: %s\n", size, p.status().to_string().c_str());
        return 1;
      }
      char row[512];
      std::snprintf(row, sizeof(row),
                    "| GPT-%s | %s | %d | %d | %d | %d | %d | %d | %.3f | %.3f | %.3f | %.3f | "
                    "%.3f | %s | %.6f |\n",
                    size, merge ? "yes" : "no", ts.graph.size(), p->leader_nodes, p->ilp_nodes,
                    p->ilp.core_nodes, p->ilp.variables, p->ilp.constraints, build_s,
                    p->strategies_s, p->cost_graph_s,
                    p->ilp.reduce_s + p->ilp.build_s + p->ilp.solve_s, p->total_s,
                    p->ilp.optimal ? "yes" : "no (time limit)", p->compute_s + p->communication_s);
      table << row;
      std::fputs(row, stdout);
      std::fflush(stdout);
    }
  }
  std::printf("\n%s", table.str().c_str());
  if (record) {
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof(date), "%Y-%m-%d", std::localtime(&now));
    std::ifstream cpu("/proc/cpuinfo");
    std::string line, model = "unknown CPU";
    while (std::getline(cpu, line))
      if (line.rfind("model name", 0) == 0) {
        model = line.substr(line.find(':') + 2);
        break;
      }
    std::ofstream out(std::string(ALPA_SOURCE_DIR) + "/bench/RESULTS.md", std::ios::app);
    out << "\n## Auto-sharding ILP on full GPT training graphs, 2x4 mesh of p3.16xlarge — " << date
        << "\n\n- machine: " << model << ", 2 cores\n- command: `build/release/bench/ilp_bench"
        << (no_merge ? " --no-merge" : "") << " --record`\n- GPT training step with AdamW, fp16, "
        << "one micro-batch of 16 sequences; CBC 2.10 with exact presolve and reductions\n\n"
        << table.str();
  }
  return 0;
}
