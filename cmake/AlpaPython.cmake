# ALPA_PYTHON: the Python module `import alpa` (python/), built with pybind11 (Debian's
# pybind11-dev) for Debian's /usr/bin/python3 (python3-dev) unless Python_EXECUTABLE names
# another interpreter. On by default where pybind11 is found (not for the fuzz targets).
if(NOT DEFINED Python_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "The Python the alpa module is built for")
endif()
if((NOT DEFINED ALPA_PYTHON AND NOT ALPA_FUZZ) OR ALPA_PYTHON)
  set(PYBIND11_FINDPYTHON ON)
  find_package(pybind11 2.6 CONFIG QUIET)
endif()
option(ALPA_PYTHON "Build the Python module `import alpa` (pybind11-dev, python3-dev)"
       ${pybind11_FOUND})
if(ALPA_PYTHON AND NOT pybind11_FOUND)
  message(FATAL_ERROR "ALPA_PYTHON is ON but pybind11 was not found: install pybind11-dev and "
                      "python3-dev (scripts/install-deps.sh), or configure with -DALPA_PYTHON=OFF")
endif()
