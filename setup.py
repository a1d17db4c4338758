"""Build steps of qroute: the compiled dispatcher and the gRPC stubs.

Project metadata lives in pyproject.toml; this file holds only what cannot:

* the extension ``qroute.routing._core`` (ext/qroute/routing/_core.pyx),
  cythonized at build time. It is optional: if the source is missing, or
  Cython or the C compiler fails, the build prints a warning and goes on
  without it, and qroute runs on the pure-Python reference dispatcher.
* ``build_proto``: runs grpc_tools.protoc over proto/qroute/v1/*.proto into
  src/qroute/v1/ (``*_pb2.py``, ``*_pb2_grpc.py``, ``*_pb2.pyi``). It runs
  before ``build_py`` (so regular wheels copy the stubs into the build lib),
  for editable installs (``build_py`` in editable mode) and for ``develop``.

Environment variables read at build time:

* ``QROUTE_NO_EXTENSIONS=1``: do not build the extension at all.
* ``QROUTE_REQUIRE_EXTENSIONS=1``: a missing source or a failed build of the
  extension fails the build (CI uses it so the compiler's error shows where
  it happened).
* ``QROUTE_DEBUG=1``: compile with the ``QROUTE_DEBUG`` macro and compile-time
  constant (costly invariant checks) and with bounds checking on.
"""

import glob
import os
import sys

from setuptools import Command, Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

try:  # deprecated, may leave setuptools; PEP 660 editable installs do not use it
    from setuptools.command.develop import develop
except ImportError:  # pragma: no cover
    develop = None

PROTO_ROOT = "proto"
PROTO_GLOB = "proto/qroute/v1/*.proto"
STUBS_ROOT = "src"
CORE_PYX = "ext/qroute/routing/_core.pyx"

BUILD_ERRORS = (CCompilerError, CompileError, ExecError, PlatformError, OSError)


def _env_flag(name):
    return os.environ.get(name) == "1"  # the same test as qroute.routing's


DEBUG = _env_flag("QROUTE_DEBUG")


_warned = set()


def _warn(message):
    if message in _warned:  # setuptools may finalize build_ext more than once
        return
    _warned.add(message)
    bar = "*" * 76
    print(f"\n{bar}\nWARNING: {message}\n{bar}\n", file=sys.stderr, flush=True)


def _extensions():
    if _env_flag("QROUTE_NO_EXTENSIONS"):
        _warn("QROUTE_NO_EXTENSIONS is set: qroute.routing._core is not built; "
              "qroute will use the pure-Python reference dispatcher.")
        return []
    if not os.path.exists(CORE_PYX):
        if _env_flag("QROUTE_REQUIRE_EXTENSIONS"):
            raise SystemExit(f"QROUTE_REQUIRE_EXTENSIONS=1 but {CORE_PYX} is missing")
        _warn(f"{CORE_PYX} is missing: qroute.routing._core is not built; "
              "qroute will use the pure-Python reference dispatcher.")
        return []
    if sys.platform == "win32":
        compile_args = ["/O2"]
    else:
        compile_args = ["-O3", "-g"] if DEBUG else ["-O3"]
    return [
        Extension(
            "qroute.routing._core",
            sources=[CORE_PYX],
            depends=sorted(glob.glob("ext/qroute/routing/*.pxd") + glob.glob("ext/qroute/routing/*.pxi")),
            define_macros=[("QROUTE_DEBUG", "1")] if DEBUG else [],
            extra_compile_args=compile_args,
        )
    ]


class optional_build_ext(build_ext):
    """Cythonizes, then compiles; any failure is a warning, not an error."""

    def finalize_options(self):
        # Cythonize before setuptools prepares the Extension objects (it adds
        # attributes that in-place and editable builds need).
        self._failed = set()
        try:
            self.distribution.ext_modules = self._cythonize(self.distribution.ext_modules)
        except Exception as exc:  # Cython's CompileError, a missing .pxd, ...
            self._give_up(exc)
            self.distribution.ext_modules = []
        super().finalize_options()

    def run(self):
        # A debug and a release build share the output path; switching between
        # them must recompile even though the sources have not changed.
        mode_stamp = os.path.join(self.build_temp, "qroute-build-mode")
        mode = "debug" if DEBUG else "release"
        if not os.path.exists(mode_stamp) or open(mode_stamp).read() != mode:
            self.force = True
        try:
            super().run()
        except Exception as exc:  # no compiler found, ...
            self._give_up(exc)
            self.extensions = []
        else:
            os.makedirs(self.build_temp, exist_ok=True)
            with open(mode_stamp, "w") as f:
                f.write(mode)

    def build_extensions(self):
        super().build_extensions()
        # Leave failures out of the in-place copy and of get_outputs(), which
        # editable installs and bdist_wheel would otherwise look for.
        self.extensions = [e for e in self.extensions if e.name not in self._failed]

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            self._give_up(exc, ext.name)
            self._failed.add(ext.name)

    @staticmethod
    def _cythonize(extensions):
        if not extensions:
            return extensions
        from Cython.Build import cythonize

        return cythonize(
            extensions,
            include_path=["ext"],  # lets Cython find the .pxd beside the .pyx
            # Generated C goes to build/, not beside the sources; a debug build
            # has its own directory because compile-time constants do not
            # invalidate Cython's cache.
            build_dir=os.path.join("build", "cython-debug" if DEBUG else "cython"),
            compile_time_env={"QROUTE_DEBUG": 1 if DEBUG else 0},
            compiler_directives={
                "language_level": 3,
                "boundscheck": DEBUG,
                "wraparound": False,
                "cdivision": True,
                "initializedcheck": DEBUG,
            },
            quiet=True,
        )

    def _give_up(self, exc, name="qroute.routing._core"):
        if _env_flag("QROUTE_REQUIRE_EXTENSIONS"):
            raise exc
        _warn(f"could not build {name} ({type(exc).__name__}: {exc}; see the "
              "errors above). qroute will use the pure-Python reference "
              "dispatcher (same results, slower). Without a C compiler: "
              "install one and the Python headers, then reinstall.")


class build_proto(Command):
    """Generates the qroute.v1 gRPC stubs from proto/qroute/v1/*.proto."""

    description = "generate qroute.v1 *_pb2.py, *_pb2_grpc.py and *.pyi with grpc_tools.protoc"
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        protos = sorted(glob.glob(PROTO_GLOB))
        if not protos:
            if glob.glob(os.path.join(STUBS_ROOT, "qroute", "v1", "*_pb2.py")):
                return  # an unpacked wheel or a tree without proto/: stubs are there
            raise SystemExit(f"build_proto: no {PROTO_GLOB} found")
        from importlib.resources import files

        from grpc_tools import protoc

        well_known = str(files("grpc_tools") / "_proto")  # google/protobuf/*.proto
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={STUBS_ROOT}",
            f"--pyi_out={STUBS_ROOT}",
            f"--grpc_python_out={STUBS_ROOT}",
            *protos,  # relative paths under -Iproto: imports read qroute/v1/x.proto
        ]
        print("running", " ".join(args[1:]))
        if protoc.main(args) != 0:
            raise SystemExit("build_proto: grpc_tools.protoc failed (see above)")
        # protoc marks the .py files as generated but not the .pyi ones.
        for proto in protos:
            stub = os.path.join(STUBS_ROOT, os.path.relpath(proto, PROTO_ROOT)[: -len(".proto")] + "_pb2.pyi")
            with open(stub, encoding="utf-8") as f:
                text = f.read()
            with open(stub, "w", encoding="utf-8") as f:
                f.write(f"# Generated by grpc_tools.protoc from {proto} (setup.py build_proto). DO NOT EDIT!\n{text}")


class build_py_with_protos(build_py):
    """build_py that generates the stubs first, so they land in the build lib."""

    def run(self):
        self.run_command("build_proto")
        super().run()


cmdclass = {
    "build_proto": build_proto,
    "build_py": build_py_with_protos,
    "build_ext": optional_build_ext,
}

if develop is not None:

    class develop_with_protos(develop):
        """Legacy ``setup.py develop``: generate the stubs in place too."""

        def run(self):
            self.run_command("build_proto")
            super().run()

    cmdclass["develop"] = develop_with_protos


setup(ext_modules=_extensions(), cmdclass=cmdclass)
