#include "alpa/support/trace.h"
#include "alpa/support/files.h"

#include <cstdio>
#include <fstream>
#include <set>

namespace alpa {
namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string micros(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s * 1e6);
  return buf;
}

}  // namespace

std::string chrome_trace_json(const std::vector<TraceEvent>& events, const std::string& title) {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"title\":" + json_string(title) +
                    "},\"traceEvents\":[\n";
  bool first = true;
  std::set<int> devices;
  for (const TraceEvent& e : events) devices.insert(e.device);
  for (int d : devices) {
    out += (first ? "" : ",\n");
    first = false;
    out += cat("{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":", d,
               ",\"args\":{\"name\":\"device ", d, "\"}}");
    out += cat(",\n{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":", d,
               ",\"args\":{\"sort_index\":", d, "}}");
  }
  for (const TraceEvent& e : events) {
    out += (first ? "" : ",\n");
    first = false;
    out += cat("{\"ph\":\"X\",\"name\":", json_string(e.name), ",\"cat\":", json_string(e.category),
               ",\"pid\":", e.device, ",\"tid\":", e.lane, ",\"ts\":", micros(e.start_s),
               ",\"dur\":", micros(e.duration_s), ",\"args\":{\"stage\":", e.stage,
               ",\"micro_batch\":", e.micro_batch, "}}");
  }
  return out + "\n]}\n";
}

Status write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events,
                          const std::string& title) {
  return write_file(path, chrome_trace_json(events, title)).with_context("trace");
}

}  // namespace alpa
