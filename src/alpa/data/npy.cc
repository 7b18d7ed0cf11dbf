#include "alpa/data/npy.h"

#include <sys/stat.h>

#include <dirent.h>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "alpa/support/files.h"

namespace alpa {
namespace {

constexpr int64_t kMaxNpyBytes = int64_t{1} << 34;  // 16 GiB
constexpr int kMaxNpyRank = 8;
constexpr char kMagic[] = "\x93NUMPY";

Status bad(const std::string& name, const std::string& what) {
  return invalid_argument(cat(name, ": not a NumPy array file we can read: ", what),
                          "write it with numpy.save (C order, little-endian numbers)");
}

// The header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (N, ...), }
struct HeaderParser {
  const std::string& s;
  size_t i = 0;
  void space() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t')) ++i;
  }
  bool eat(char c) {
    space();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  bool quoted(std::string& out) {
    space();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) return false;
    const char q = s[i++];
    const size_t end = s.find(q, i);
    if (end == std::string::npos || end - i > 64) return false;
    out = s.substr(i, end - i);
    i = end + 1;
    return true;
  }
  bool word(const char* w) {
    space();
    const size_t n = std::strlen(w);
    if (s.compare(i, n, w) != 0) return false;
    i += n;
    return true;
  }
  bool tuple(std::vector<int64_t>& dims) {
    if (!eat('(')) return false;
    while (!eat(')')) {
      space();
      int64_t v = 0;
      size_t digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 16) {
        v = v * 10 + (s[i++] - '0');
        ++digits;
      }
      if (digits == 0 || dims.size() >= kMaxNpyRank) return false;
      dims.push_back(v);
      if (!eat(',')) {
        if (!eat(')')) return false;
        break;
      }
    }
    return true;
  }
};

}  // namespace

int64_t NpyArray::row_size() const {
  int64_t n = 1;
  for (size_t d = 1; d < shape_.size(); ++d) n *= shape_[d];
  return n;
}

Result<NpyArray> NpyArray::open(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(std::string bytes, read_file(path, kMaxNpyBytes));
  return parse(std::move(bytes), path);
}

Result<NpyArray> NpyArray::parse(std::string bytes, const std::string& name) {
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0)
    return bad(name, "it does not begin with the .npy magic \\x93NUMPY");
  const int major = static_cast<unsigned char>(bytes[6]);
  if (major < 1 || major > 3) return bad(name, cat("format version ", major, " is unknown"));
  size_t header_len = static_cast<unsigned char>(bytes[8]) |
                      (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  size_t start = 10;
  if (major >= 2) {
    if (bytes.size() < 12) return bad(name, "the header length is cut off");
    header_len |= (static_cast<size_t>(static_cast<unsigned char>(bytes[10])) << 16) |
                  (static_cast<size_t>(static_cast<unsigned char>(bytes[11])) << 24);
    start = 12;
  }
  if (header_len > bytes.size() - start)
    return bad(name, cat("the header of ", header_len, " bytes runs past the end of the file"));
  const std::string header = bytes.substr(start, header_len);
  NpyArray a;
  a.path_ = name;
  HeaderParser p{header};
  bool fortran = false, have_descr = false, have_shape = false, have_order = false;
  if (!p.eat('{')) return bad(name, "the header is not a dict");
  while (!p.eat('}')) {
    std::string key;
    if (!p.quoted(key) || !p.eat(':')) return bad(name, "the header dict is malformed");
    if (key == "descr") {
      have_descr = p.quoted(a.descr_);
      if (!have_descr) return bad(name, "'descr' is not a string (a structured dtype?)");
    } else if (key == "fortran_order") {
      have_order = true;
      if (p.word("True"))
        fortran = true;
      else if (!p.word("False"))
        return bad(name, "'fortran_order' is not True or False");
    } else if (key == "shape") {
      have_shape = p.tuple(a.shape_);
      if (!have_shape) return bad(name, "'shape' is not a tuple of at most 8 sizes");
    } else {
      return bad(name, cat("unknown header key '", key, "'"));
    }
    if (!p.eat(',') && !p.eat('}')) return bad(name, "the header dict is malformed");
    if (p.i > 0 && header[p.i - 1] == '}') break;
  }
  if (!have_descr || !have_shape || !have_order)
    return bad(name, "the header lacks 'descr', 'fortran_order' or 'shape'");
  if (fortran)
    return invalid_argument(cat(name, ": the array is in Fortran order"),
                            "save numpy.ascontiguousarray(a) instead");
  const std::string& d = a.descr_;
  if (d.size() < 3 || (d[0] != '<' && d[0] != '|' && d[0] != '=') ||
      std::string("fiub").find(d[1]) == std::string::npos)
    return bad(name, cat("element type '", d, "' is not a little-endian number"));
  a.kind_ = d[1];
  const std::string width = d.substr(2);
  if (width != "1" && width != "2" && width != "4" && width != "8")
    return bad(name, cat("element type '", d, "' has an unsupported width"));
  a.item_bytes_ = width[0] - '0';
  if ((a.kind_ == 'f' && a.item_bytes_ == 1) || (a.kind_ == 'b' && a.item_bytes_ != 1))
    return bad(name, cat("element type '", d, "' is not supported"));
  // Bounded with the empty dims left out too, so a row's size never overflows either.
  int64_t elements = 1, extent = 1;
  for (int64_t e : a.shape_) {
    if (e > 0 && extent > (int64_t{1} << 48) / e)
      return bad(name, "the shape has more than 2^48 elements");
    extent *= std::max<int64_t>(e, 1);
    elements *= e;
  }
  a.data_offset_ = start + header_len;
  const size_t want = static_cast<size_t>(elements) * static_cast<size_t>(a.item_bytes_);
  if (bytes.size() - a.data_offset_ != want)
    return bad(name, cat("the shape ", a.shape_.size(), "-d with ", elements, " elements of ",
                         a.item_bytes_, " bytes needs ", want, " data bytes, the file has ",
                         bytes.size() - a.data_offset_));
  a.bytes_ = std::move(bytes);
  return a;
}

void NpyArray::read_row(int64_t row, float* out) const {
  const int64_t n = row_size();
  const char* p = bytes_.data() + data_offset_ + static_cast<size_t>(row * n * item_bytes_);
  for (int64_t k = 0; k < n; ++k, p += item_bytes_) {
    uint64_t raw = 0;
    std::memcpy(&raw, p, static_cast<size_t>(item_bytes_));
    double v = 0;
    switch (kind_) {
      case 'f':
        if (item_bytes_ == 4) {
          v = std::bit_cast<float>(static_cast<uint32_t>(raw));
        } else if (item_bytes_ == 8) {
          v = std::bit_cast<double>(raw);
        } else {  // IEEE half
          const uint32_t h = static_cast<uint32_t>(raw), sign = (h >> 15) & 1, exp = (h >> 10) & 31,
                         man = h & 1023;
          const double mag = exp == 0    ? std::ldexp(man, -24)
                             : exp == 31 ? (man ? NAN : INFINITY)
                                         : std::ldexp(man + 1024, static_cast<int>(exp) - 25);
          v = sign ? -mag : mag;
        }
        break;
      case 'i': {
        const int shift = 64 - 8 * item_bytes_;
        v = static_cast<double>(static_cast<int64_t>(raw << shift) >> shift);
        break;
      }
      default: v = static_cast<double>(raw); break;  // 'u', 'b'
    }
    out[k] = static_cast<float>(v);
  }
}

Status write_npy(const std::string& path, const std::vector<int64_t>& shape,
                 const std::vector<float>& values, bool int32) {
  std::string dims;  // as numpy writes them: "(4, 3)", "(5,)", "()"
  for (size_t d = 0; d < shape.size(); ++d) dims += cat(d > 0 ? ", " : "", shape[d]);
  if (shape.size() == 1) dims += ",";
  std::string header = cat("{'descr': '", int32 ? "<i4" : "<f4",
                           "', 'fortran_order': False, 'shape': (", dims, "), }");
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out(kMagic, 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 255);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  for (float v : values) {
    uint32_t raw =
        int32 ? static_cast<uint32_t>(static_cast<int32_t>(v)) : std::bit_cast<uint32_t>(v);
    for (int b = 0; b < 4; ++b) out += static_cast<char>((raw >> (8 * b)) & 255);
  }
  return write_file(path, out);
}

bool ArrayDataset::looks_like(const std::string& dir) {
  struct stat st {};
  if (::stat((dir + "/header.json").c_str(), &st) == 0) return false;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    found = found || (n.size() > 4 && n.compare(n.size() - 4, 4, ".npy") == 0);
  }
  ::closedir(d);
  return found;
}

Result<ArrayDataset> ArrayDataset::open(const std::string& dir,
                                        const std::vector<std::string>& inputs) {
  ArrayDataset ds;
  struct stat st {};
  int with_validation = 0;
  for (const std::string& in : inputs)
    with_validation += ::stat(cat(dir, "/", in, ".val.npy").c_str(), &st) == 0;
  if (with_validation != 0 && with_validation != static_cast<int>(inputs.size()))
    return invalid_argument(
        cat(dir, ": some inputs have a held-out array (<input>.val.npy) and ", "others do not"),
        "give one for every input, or none");
  for (const std::string& in : inputs) {
    const std::string path = cat(dir, "/", in, ".npy");
    if (::stat(path.c_str(), &st) != 0)
      return invalid_argument(cat(dir, ": no array for the model input '", in, "' (", path, ")"),
                              cat("save the samples of '", in, "' with numpy.save('", path,
                                  "', a), the samples along dim 0"));
    ALPA_ASSIGN_OR_RETURN(NpyArray a, NpyArray::open(path));
    ds.train_.push_back(std::move(a));
    if (with_validation) {
      ALPA_ASSIGN_OR_RETURN(NpyArray v, NpyArray::open(cat(dir, "/", in, ".val.npy")));
      ds.validation_.push_back(std::move(v));
    }
  }
  for (const std::vector<NpyArray>* split : {&ds.train_, &ds.validation_})
    for (const NpyArray& a : *split)
      if (a.rows() != (*split)[0].rows() || a.shape().empty())
        return invalid_argument(
            cat(a.path(), " has ", a.shape().empty() ? 0 : a.rows(), " samples along dim 0 but ",
                (*split)[0].path(), " has ", (*split)[0].rows()),
            "every input's array holds the same samples, one per row");
  if (!inputs.empty() && ds.train_rows() == 0)
    return invalid_argument(cat(ds.train_[0].path(), " holds no samples"));
  return ds;
}

}  // namespace alpa
