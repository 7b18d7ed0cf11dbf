"""Helpers shared by the benchmark scripts."""
import platform


def cpu_name():
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def status_mb(pid, field):
    """A memory figure of process `pid` from /proc/PID/status in MB ("VmRSS", "VmHWM"), or NaN."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")
