// alpa._core: the compiled half of `import alpa` (python/alpa/__init__.py is the other).
#include <pybind11/eval.h>

#include <algorithm>
#include <string>

#include "common.h"

namespace alpa::python {
namespace {

// alpa.Error(message, hint="", code=""): what every user error raises; str() is the message
// followed by "hint: ..." as the `alpa` command prints it.
py::object make_error_type(py::module_& m) {
  py::dict scope;
  py::exec(R"(
class Error(Exception):
    """A user error: what is wrong (message) and how to fix it (hint).

    Raised for bad arguments, unknown models or files, plans that cannot be made, data of
    the wrong shape, and whatever else the `alpa` command reports as an error.
    """

    def __init__(self, message, hint="", code=""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self):
        return self.message + ("\nhint: " + self.hint if self.hint else "")
)",
           scope);
  py::object type = scope["Error"];
  type.attr("__module__") = "alpa";
  m.attr("Error") = type;
  return type;
}

}  // namespace
}  // namespace alpa::python

PYBIND11_MODULE(_core, m) {
  using namespace alpa::python;
  m.doc() = "The compiled core of the alpa module; use `import alpa`.";
  static py::object error_type = make_error_type(m);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      const alpa::Status& s = e.status();
      std::string code = alpa::status_code_name(s.code());  // "not found" -> "not_found"
      std::replace(code.begin(), code.end(), ' ', '_');
      py::object err = error_type(s.message(), s.hint(), code);
      PyErr_SetObject(error_type.ptr(), err.ptr());
    }
  });
  bind_model(m);
  bind_plan(m);
  bind_trainer(m);
}
