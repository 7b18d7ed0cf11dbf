// The text form of a Program: versioned JSON that round-trips exactly
// (program_from_json(program_to_json(p)) == p), documented in docs/programs.md.
//
//   {"format": "alpa-program/1", "model": "gpt-tiny", "source": {...},
//    "step_fingerprint": "...", "devices": 4, "micro_batches": 4, "schedule": "1f1b",
//    "predicted_step_time_s": 0.01,
//    "params": [{"name": "wte", "type": "f32[128,64]", "role": "weight", "init": "normal",
//                "scale": 0.02}, ...],
//    "stages": [{"mesh": [2, 2], "devices": [0, 1, 2, 3], "loss": 7,
//                "values": [{"name": "wte", "type": "f32[128,64]", "layout": "RS1",
//                            "kind": "owned", "param": 0, "per_step": true}, ...],
//                "tasks": [{"name": "forward", "inputs": [0, 3], "outputs": [5],
//                           "program": ["graph forward {", "  %x = parameter() ...", "}"]}],
//                "instructions": ["RUN forward mb0", "SEND t0 mb0", "FREE v5 mb0", ...]}],
//    "transfers": [{"from": [0, 5], "to": [1, 2], "shape": [8, 64],
//                   "src_layout": "S0R", "dst_layout": "RR", "receive_layout": "S1R",
//                   "boxes": [[0, 2, [0, 0], [4, 32]], ...], "restore": [...]}]}
//
// Task programs are the text IR (ir/text.h), one line per array entry. Reading checks the
// format and version, every field's presence and type, parses every graph, and runs the
// verifier (verify.h); errors name the file and the field ("stages[1].tasks[0].inputs[3]").
#pragma once

#include <string>
#include <string_view>

#include "alpa/program/program.h"
#include "alpa/support/status.h"

namespace alpa {

inline constexpr std::string_view kProgramFormat = "alpa-program/1";

std::string program_to_json(const Program& p);
// Parses and verifies. `source_name` names the text in errors (a file path, say).
Result<Program> program_from_json(std::string_view text,
                                  std::string_view source_name = "<program>");

// Written through a temporary file and a rename, so a crash leaves the old file or the new.
Status save_program(const Program& p, const std::string& path);
Result<Program> load_program(const std::string& path);

// "RUN forward mb0" back to an instruction of `stage` (task names from the stage).
Result<Instruction> parse_instruction(const Stage& stage, std::string_view text);

}  // namespace alpa
