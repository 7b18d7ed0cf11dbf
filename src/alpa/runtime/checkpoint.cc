#include "alpa/runtime/checkpoint.h"

#include "alpa/support/json_excerpt.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

namespace alpa {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "alpa-checkpoint/1";
constexpr int64_t kMaxManifestBytes = int64_t{256} << 20;

std::string rank_file_name(int process) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rank-%05d.bin", process);
  return buf;
}

// Writes `bytes` to path.tmp, flushes it to disk and renames it to `path`.
Status write_atomically(const fs::path& path, const std::string& bytes) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return io_error(cat("cannot create ", tmp.string(), ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return io_error(cat("writing ", tmp.string(), ": ", why));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    return io_error(cat("flushing ", tmp.string(), ": ", std::strerror(errno)));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    return io_error(cat("renaming ", tmp.string(), " to ", path.string(), ": ", ec.message()));
  return ok_status();
}

// The step directory's staging name: a step is written there whole, then published.
constexpr const char* kStaging = ".partial";

// The step name `latest` holds ("" when there is none or it cannot be read).
std::string latest_name(const fs::path& dir) {
  std::ifstream in(dir / "latest");
  std::string name;
  std::getline(in, name);
  return name;
}

// Before a new checkpoint: what interrupted writes left in `dir` — staging directories,
// step directories without a manifest (written in place by earlier versions), latest.tmp — is
// removed, except whatever `latest` names; nothing else in `dir` is touched. Returns how many
// entries went.
int remove_interrupted_writes(const fs::path& dir) {
  const std::string keep = latest_name(dir);
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == keep) continue;
    const bool step = name.rfind("step-", 0) == 0;
    const bool staging = step && name.size() > 8 && name.ends_with(kStaging);
    const bool tmp = name == "latest.tmp";
    if (staging || tmp ||
        (step && e.is_directory(ec) && !fs::exists(e.path() / "manifest.json", ec)))
      stale.push_back(e.path());
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
  return static_cast<int>(stale.size());
}

void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

// Makes the complete staging directory the step `name` and points `latest` at it. At every
// moment `latest` names a complete step: a new step is renamed into place before `latest`
// moves; a step that already exists (a run resumed from an earlier step writes it again) is
// swapped with the staging directory in one atomic exchange, or, where the filesystem cannot
// exchange, `latest` names the complete staging directory while the old step is replaced.
Status publish_step(const fs::path& dir, const fs::path& staging, const std::string& name) {
  const fs::path step_dir = dir / name;
  std::error_code ec;
  auto point_latest = [&](const std::string& to) {
    Status s = write_atomically(dir / "latest", to + "\n");
    sync_directory(dir);
    return s;
  };
  if (!fs::exists(step_dir, ec)) {
    fs::rename(staging, step_dir, ec);
    if (ec) return io_error(cat("renaming ", staging.string(), " to ", name, ": ", ec.message()));
    sync_directory(dir);
    return point_latest(name);
  }
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, step_dir.c_str(), RENAME_EXCHANGE) == 0) {
    sync_directory(dir);
    ALPA_RETURN_IF_ERROR(point_latest(name));
    fs::remove_all(staging, ec);  // the step it replaced
    return ok_status();
  }
  ALPA_RETURN_IF_ERROR(point_latest(staging.filename().string()));
  fs::remove_all(step_dir, ec);
  fs::rename(staging, step_dir, ec);
  if (ec) return io_error(cat("renaming ", staging.string(), " to ", name, ": ", ec.message()));
  sync_directory(dir);
  return point_latest(name);
}

json shape_json(const Shape& s) {
  return json(std::vector<int64_t>(s.begin(), s.end()));
}

// This process's blocks in one file; returns the blocks' manifest entries and the file's.
Result<json> write_rank_file(const fs::path& step_dir, int process, const CheckpointInfo& info,
                             const std::vector<CheckpointBlock>& blocks) {
  std::string bytes;
  json entries = json::array();
  for (const CheckpointBlock& b : blocks) {
    if (b.tensor < 0 || b.tensor >= static_cast<int>(info.tensors.size()) || b.data == nullptr)
      return internal_error(cat("checkpoint block of tensor ", b.tensor, " is invalid"));
    const size_t n = static_cast<size_t>(b.data->size()) * sizeof(float);
    entries.push_back({{"tensor", b.tensor},
                       {"offset", bytes.size()},
                       {"start", b.offsets},
                       {"shape", shape_json(b.data->shape())},
                       {"checksum", checksum_hex(b.data->data(), n)}});
    bytes.append(reinterpret_cast<const char*>(b.data->data()), n);
  }
  const std::string name = rank_file_name(process);
  ALPA_RETURN_IF_ERROR(write_atomically(step_dir / name, bytes));
  return json{{"file", name},
              {"bytes", bytes.size()},
              {"checksum", checksum_hex(bytes.data(), bytes.size())},
              {"blocks", entries}};
}

Status bad(const fs::path& file, const std::string& what) {
  return failed_precondition(
      cat("checkpoint ", file.string(), " is damaged: ", what, "; it was not loaded"),
      "resume from an earlier step directory, or start without --resume");
}

Result<std::string> read_file_limited(const fs::path& path, int64_t limit) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return not_found(cat("cannot read ", path.string(), ": ", ec.message()));
  if (static_cast<int64_t>(size) > limit)
    return bad(path, cat("it is ", size, " bytes, more than a manifest can be"));
  std::ifstream in(path, std::ios::binary);
  std::string s(size, '\0');
  if (!in.read(s.data(), static_cast<std::streamsize>(size)))
    return io_error(cat("cannot read ", path.string()));
  return s;
}

// The step directory `path` names: itself if it has a manifest, else DIR/latest's target.
Result<fs::path> resolve_step_dir(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return not_found(
        cat("checkpoint ", path.string(), " does not exist"),
        "pass the --checkpoint-dir of an earlier run, or one of its step-* directories");
  if (fs::exists(path / "manifest.json", ec)) return path;
  if (fs::exists(path / "latest", ec)) {
    std::string name = latest_name(path);
    if (name.rfind("step-", 0) != 0 || name.find('/') != std::string::npos)
      return bad(path / "latest", cat("it names '", name, "', not a step directory"));
    // A step being replaced: `latest` names its staging directory until the swap is done.
    if (name.ends_with(kStaging) && !fs::exists(path / name / "manifest.json", ec))
      name.resize(name.size() - std::string_view(kStaging).size());
    if (!fs::exists(path / name / "manifest.json", ec))
      return bad(path / name, "`latest` points to it but it has no manifest.json");
    return path / name;
  }
  if (fs::is_directory(path, ec)) {
    std::string newest, any;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("step-", 0) != 0) continue;
      any = name;
      if (fs::exists(e.path() / "manifest.json", ec) && name > newest) newest = name;
    }
    if (!newest.empty())
      return failed_precondition(
          cat("checkpoint ", path.string(), " has no `latest` file naming its newest step"),
          cat("resume from a step directory: --resume ", (path / newest).string(),
              " is the newest complete one"));
    if (!any.empty())
      return failed_precondition(
          cat("checkpoint ", path.string(), " has no complete step (no `latest`; ", any,
              " has no manifest.json)"),
          "a run stopped before its first checkpoint finished; start without --resume");
  }
  return not_found(cat(path.string(), " is not a checkpoint (no manifest.json or latest)"));
}

template <typename T>
Result<T> field(const json& j, const char* key, const fs::path& file) {
  if (!j.is_object() || !j.contains(key)) return bad(file, cat("field \"", key, "\" is missing"));
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    return bad(file, cat("field \"", key, "\" has the wrong type"));
  }
}

}  // namespace

std::string checksum_hex(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ULL;
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  for (; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  h ^= bytes;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string checkpoint_step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

Result<std::string> write_checkpoint(World& world, const std::string& dir,
                                     const CheckpointInfo& info,
                                     const std::vector<CheckpointBlock>& blocks) {
  const std::string name = checkpoint_step_name(info.step);
  const fs::path step_dir = fs::path(dir) / name;
  const fs::path staging = fs::path(dir) / (name + kStaging);
  const int me = world.process_index();
  // Every process writes into the staging directory; process 0 writes the manifest last and
  // then publishes the step (publish_step), so no complete step is ever removed before its
  // replacement is complete. Process 0 first clears what interrupted writes left.
  std::string ready;
  if (me == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!ec) remove_interrupted_writes(dir);
    if (!ec) fs::remove_all(staging, ec);
    if (!ec) fs::create_directory(staging, ec);
    if (ec) ready = cat("cannot create ", staging.string(), ": ", ec.message());
  }
  ALPA_RETURN_IF_ERROR(world.broadcast_bytes(ready, 0));
  if (!ready.empty()) return io_error(ready, "choose a writable --checkpoint-dir");

  Result<json> mine = write_rank_file(staging, me, info, blocks);
  ALPA_ASSIGN_OR_RETURN(
      std::vector<std::string> all,
      world.gather_bytes(mine.ok() ? json_line(*mine) : "!" + mine.status().message(), 0));
  std::string result;  // empty: written; otherwise the error
  if (me == 0) {
    json files = json::array();
    std::vector<json> tensors;
    for (const CheckpointTensor& t : info.tensors)
      tensors.push_back({{"name", t.name},
                         {"role", t.role},
                         {"dtype", std::string(dtype_name(t.type.dtype))},
                         {"shape", shape_json(t.type.shape)},
                         {"blocks", json::array()}});
    for (size_t p = 0; p < all.size() && result.empty(); ++p) {
      if (!all[p].empty() && all[p][0] == '!') {
        result = cat("process ", p, ": ", all[p].substr(1));
        break;
      }
      json f = json::parse(all[p]);
      for (json& b : f["blocks"]) {
        const int t = b["tensor"].get<int>();
        b.erase("tensor");
        b["file"] = f["file"];
        tensors[static_cast<size_t>(t)]["blocks"].push_back(std::move(b));
      }
      f.erase("blocks");
      files.push_back(std::move(f));
    }
    if (result.empty()) {
      json body = {{"format", kFormat},  {"model", info.model},     {"step", info.step},
                   {"plan", info.plan},  {"backend", info.backend}, {"ranks", info.ranks},
                   {"tensors", tensors}, {"files", files}};
      const std::string text = json_line(body);
      const json wrapped = {{"checkpoint", body},
                            {"checksum", checksum_hex(text.data(), text.size())}};
      Status s = write_atomically(staging / "manifest.json",
                                  wrapped.dump(1, ' ', false, json::error_handler_t::replace));
      if (s.ok()) {
        sync_directory(staging);
        s = publish_step(dir, staging, name);
      }
      if (!s.ok()) result = s.message();
    }
  }
  ALPA_RETURN_IF_ERROR(world.broadcast_bytes(result, 0));
  if (!result.empty()) return io_error(cat("writing checkpoint ", step_dir.string(), ": ", result));
  return step_dir.string();
}

Result<LoadedCheckpoint> read_checkpoint(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(const fs::path step_dir, resolve_step_dir(path));
  const fs::path manifest_path = step_dir / "manifest.json";
  ALPA_ASSIGN_OR_RETURN(std::string text, read_file_limited(manifest_path, kMaxManifestBytes));
  json wrapped = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (wrapped.is_discarded()) return bad(manifest_path, "it is not valid JSON (truncated?)");
  ALPA_ASSIGN_OR_RETURN(json body, field<json>(wrapped, "checkpoint", manifest_path));
  ALPA_ASSIGN_OR_RETURN(std::string sum, field<std::string>(wrapped, "checksum", manifest_path));
  const std::string body_text = json_line(body);
  if (checksum_hex(body_text.data(), body_text.size()) != sum)
    return bad(manifest_path, "its checksum does not match its contents");
  ALPA_ASSIGN_OR_RETURN(std::string format, field<std::string>(body, "format", manifest_path));
  if (format != kFormat)
    return failed_precondition(
        cat(manifest_path.string(), " has format '", format, "'; this alpa reads ", kFormat));

  LoadedCheckpoint out;
  out.path = step_dir.string();
  CheckpointInfo& info = out.info;
  ALPA_ASSIGN_OR_RETURN(info.model, field<std::string>(body, "model", manifest_path));
  ALPA_ASSIGN_OR_RETURN(info.step, field<int64_t>(body, "step", manifest_path));
  ALPA_ASSIGN_OR_RETURN(info.plan, field<std::string>(body, "plan", manifest_path));
  ALPA_ASSIGN_OR_RETURN(info.backend, field<std::string>(body, "backend", manifest_path));
  ALPA_ASSIGN_OR_RETURN(info.ranks, field<int>(body, "ranks", manifest_path));

  // Files: present, of the recorded size and checksum.
  ALPA_ASSIGN_OR_RETURN(json files, field<json>(body, "files", manifest_path));
  std::map<std::string, std::string> contents;
  int64_t content_bytes = 0;
  if (!files.is_array()) return bad(manifest_path, "\"files\" is not a list");
  for (const json& f : files) {
    ALPA_ASSIGN_OR_RETURN(std::string name, field<std::string>(f, "file", manifest_path));
    ALPA_ASSIGN_OR_RETURN(int64_t bytes, field<int64_t>(f, "bytes", manifest_path));
    ALPA_ASSIGN_OR_RETURN(std::string fsum, field<std::string>(f, "checksum", manifest_path));
    if (name.find('/') != std::string::npos || name.empty())
      return bad(manifest_path, cat("file name '", name, "' is not a plain name"));
    const fs::path fp = step_dir / name;
    std::error_code ec;
    const auto size = fs::file_size(fp, ec);
    if (ec) return bad(fp, cat("it is missing (", ec.message(), ")"));
    if (static_cast<int64_t>(size) != bytes)
      return bad(fp, cat("it has ", size, " bytes, the manifest says ", bytes, " (truncated?)"));
    std::ifstream in(fp, std::ios::binary);
    std::string data(size, '\0');
    if (!in.read(data.data(), static_cast<std::streamsize>(size)))
      return io_error(cat("cannot read ", fp.string()));
    if (checksum_hex(data.data(), data.size()) != fsum)
      return bad(fp, "its checksum does not match the manifest (corrupted)");
    content_bytes += static_cast<int64_t>(data.size());
    contents[name] = std::move(data);
  }

  ALPA_ASSIGN_OR_RETURN(json tensors, field<json>(body, "tensors", manifest_path));
  if (!tensors.is_array()) return bad(manifest_path, "\"tensors\" is not a list");
  for (const json& t : tensors) {
    CheckpointTensor ct;
    ALPA_ASSIGN_OR_RETURN(ct.name, field<std::string>(t, "name", manifest_path));
    ALPA_ASSIGN_OR_RETURN(ct.role, field<std::string>(t, "role", manifest_path));
    ALPA_ASSIGN_OR_RETURN(std::string dt, field<std::string>(t, "dtype", manifest_path));
    const std::optional<DType> dtype = parse_dtype(dt);
    if (!dtype) return bad(manifest_path, cat("tensor ", ct.name, " has dtype '", dt, "'"));
    ct.type.dtype = *dtype;
    ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> shape,
                          field<std::vector<int64_t>>(t, "shape", manifest_path));
    ct.type.shape = Shape(shape.begin(), shape.end());
    if (!shape_within_limits(ct.type.shape))
      return bad(manifest_path, cat("tensor ", ct.name, " has shape ", json_excerpt(json(shape))));
    // Its blocks must cover it from the files' bytes, so it cannot be larger than they are.
    if (ct.type.num_elements() * int64_t{4} > content_bytes)
      return bad(manifest_path, cat("tensor ", ct.name, " ", ct.type.to_string(), " is larger ",
                                    "than the checkpoint's files (", content_bytes, " bytes)"));
    Tensor whole(ct.type);
    std::vector<uint8_t> covered(static_cast<size_t>(whole.size()), 0);
    int64_t covered_count = 0;
    ALPA_ASSIGN_OR_RETURN(json blocks, field<json>(t, "blocks", manifest_path));
    if (!blocks.is_array()) return bad(manifest_path, cat("tensor ", ct.name, ": blocks"));
    for (const json& b : blocks) {
      ALPA_ASSIGN_OR_RETURN(std::string file, field<std::string>(b, "file", manifest_path));
      ALPA_ASSIGN_OR_RETURN(int64_t offset, field<int64_t>(b, "offset", manifest_path));
      ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> start,
                            field<std::vector<int64_t>>(b, "start", manifest_path));
      ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> ext,
                            field<std::vector<int64_t>>(b, "shape", manifest_path));
      ALPA_ASSIGN_OR_RETURN(std::string bsum, field<std::string>(b, "checksum", manifest_path));
      auto it = contents.find(file);
      if (it == contents.end()) return bad(manifest_path, cat("a block names unknown file ", file));
      if (start.size() != shape.size() || ext.size() != shape.size())
        return bad(manifest_path, cat("a block of ", ct.name, " has the wrong rank"));
      int64_t n = 1;
      for (size_t d = 0; d < shape.size(); ++d) {
        if (start[d] < 0 || ext[d] < 0 || start[d] > shape[d] || ext[d] > shape[d] - start[d])
          return bad(manifest_path, cat("a block of ", ct.name, " lies outside the tensor"));
        n *= ext[d];
      }
      const int64_t nbytes = n * static_cast<int64_t>(sizeof(float));
      if (offset < 0 || offset > static_cast<int64_t>(it->second.size()) ||
          nbytes > static_cast<int64_t>(it->second.size()) - offset)
        return bad(step_dir / file, cat("a block of ", ct.name, " lies past its end"));
      const char* src = it->second.data() + offset;
      if (checksum_hex(src, static_cast<size_t>(nbytes)) != bsum)
        return bad(step_dir / file, cat("the block of ", ct.name, " fails its checksum"));
      // Copy row by row along the last dim.
      const int64_t rank = static_cast<int64_t>(shape.size());
      std::vector<int64_t> strides(static_cast<size_t>(rank), 1);
      for (int64_t d = rank - 2; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
      const int64_t row = rank == 0 ? 1 : ext[rank - 1];
      const int64_t rows = row == 0 ? 0 : n / row;
      std::vector<int64_t> idx(static_cast<size_t>(std::max<int64_t>(rank - 1, 0)), 0);
      for (int64_t r = 0; r < rows; ++r) {
        int64_t g = rank == 0 ? 0 : start[rank - 1];
        for (int64_t d = 0; d + 1 < rank; ++d) g += (start[d] + idx[d]) * strides[d];
        for (int64_t k = 0; k < row; ++k) {
          if (covered[g + k]++) return bad(manifest_path, cat("blocks of ", ct.name, " overlap"));
        }
        std::memcpy(whole.data() + g, src + r * row * 4, static_cast<size_t>(row) * 4);
        covered_count += row;
        for (int64_t d = rank - 2; d >= 0; --d) {
          if (++idx[d] < ext[d]) break;
          idx[d] = 0;
        }
      }
    }
    if (covered_count != whole.size())
      return bad(manifest_path, cat("the blocks of ", ct.name, " cover ", covered_count, " of ",
                                    whole.size(), " elements"));
    info.tensors.push_back(std::move(ct));
    out.tensors.push_back(std::move(whole));
  }
  return out;
}

}  // namespace alpa
