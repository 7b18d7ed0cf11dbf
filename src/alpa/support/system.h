// What this machine and process can hold, and what to do when an allocation fails anyway.
#pragma once

#include <cstdint>

namespace alpa {

// Bytes this process can still allocate: the machine's available memory (MemAvailable), or
// less when an address-space or data limit (ulimit -v / -d) leaves less room above what the
// process already uses. -1 when nothing can be read (not Linux).
int64_t available_memory_bytes();

// Ends the process with a user error (exit code 1, "error: out of memory ...", a hint), for an
// allocation that fails after admission control said it would fit. `bytes` < 0: unknown size.
[[noreturn]] void exit_out_of_memory(int64_t bytes);

// Makes a failing operator new call exit_out_of_memory instead of throwing std::bad_alloc into
// code that cannot recover (device threads). Called once by the `alpa` program.
void install_out_of_memory_handler();

}  // namespace alpa
