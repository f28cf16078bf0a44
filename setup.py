"""The one build step setup.cfg cannot say: nvImageCodec's batched C call (batchscore/decode/hwjpeg.c).

An optional extension: where there is no C compiler (or it fails), the install still succeeds and GPU decode
uses its fallback (torchvision's nvJPEG); batchscore.decode.hwjpeg says why in the rank's log. It is built
against the nvImageCodec headers in third_party/ (no nvImageCodec needed to build), and is a plain shared library
loaded with ctypes, not a Python module.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "batchscore.decode._hwjpeg", ["batchscore/decode/hwjpeg.c"],
    include_dirs=["third_party/nvimgcodec/include", "third_party/cuda"], libraries=["dl"],
    extra_compile_args=["-std=c11", "-O2"], optional=True)])
