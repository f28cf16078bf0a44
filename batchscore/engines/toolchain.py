"""The C++ toolchain that links the torch backend's AOTInductor package, and this CPU's identity for its key.

Probing runs a compiler and `nm`, so it lives here, out of the engines' interface module: only the package
build (torch_backend), its cache key and doctor's compiler check need it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: a translation unit that needs libstdc++'s locale code, as the package's wrapper (std::regex) does
LIBSTDCXX_PROBE = "#include <locale>\nbool probe() { return std::has_facet<std::ctype<char>>(std::locale()); }\n"


@dataclass(frozen=True)
class Compiler:
    """The C++ compiler that links a compiled torch package, and why it was chosen."""

    name: str  # as asked for: $CXX, g++ or c++
    path: str | None  # None: not on PATH
    static_libstdcxx: bool | None = None  # whether it copies libstdc++ into the libraries it links; None: unknown
    note: str = ""  # compilers passed over, or the risk of the one chosen; said where the compiler is reported


def links_libstdcxx_statically(path: str) -> bool | None:
    """Whether the compiler at `path` puts libstdc++ itself into a shared library it links (as a wrapper script
    adding -static-libstdc++ does); None where that cannot be told (no nm, or the probe does not build)."""
    nm = shutil.which("nm")
    if nm is None:
        return None
    with tempfile.TemporaryDirectory(prefix="batchscore-cxx-probe-") as folder:
        source, library = Path(folder, "probe.cpp"), Path(folder, "probe.so")
        source.write_text(LIBSTDCXX_PROBE)
        try:
            subprocess.run([path, "-shared", "-fPIC", "-o", str(library), str(source)], capture_output=True,
                           timeout=120, check=True)
            symbols = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True,
                                     timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    return "_ZNSt6locale7classicEv" in symbols  # std::locale::classic(), defined in libstdc++ itself


def cxx_compiler() -> Compiler:
    """$CXX, g++ or c++: the first that links libstdc++ as a shared library, else the first found.

    The package's wrapper library uses std::regex, hence libstdc++'s locale code. A compiler that copies
    libstdc++ into it (some sites' $CXX is such a wrapper) gave a library with its own locale state beside
    the process's, and every package built so crashed on load in std::regex; the system g++ on the same
    machines gave packages that loaded (docs/dev/decisions/0010).
    """
    found, cxx = [], os.environ.get("CXX")
    missing = [f"CXX={cxx} is not on PATH"] if cxx and not shutil.which(cxx) else []
    for name in dict.fromkeys(filter(None, (cxx, "g++", "c++"))):
        path = shutil.which(name)
        if path and os.path.realpath(path) not in {os.path.realpath(c.path) for c in found}:
            found.append(Compiler(name, path, links_libstdcxx_statically(path)))
            if found[-1].static_libstdcxx is False:
                break
    if not found:
        return Compiler(cxx or "g++", None)
    chosen = found[-1] if found[-1].static_libstdcxx is False else found[0]
    passed = [f"not {c.path}: " + ("it links libstdc++ statically" if c.static_libstdcxx else "its probe did not link")
              for c in found[:found.index(chosen)]]
    risk = ["it links libstdc++ statically: its packages may crash on load (the build's load check catches that)"
            ] if chosen.static_libstdcxx else []
    return Compiler(chosen.name, chosen.path, chosen.static_libstdcxx, "; ".join(missing + passed + risk))


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """This CPU's instruction-set flags, hashed, for the torch package's cache key (doctor compares it too):
    Inductor compiles the wrapper with -march=native, so a node with other flags builds its own package
    instead of loading one that may use instructions its CPU lacks (a crash no error handling catches)."""
    try:
        flags = next((line.split(":", 1)[1] for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16] if flags else \
        f"{platform.machine()} {platform.processor()}"
