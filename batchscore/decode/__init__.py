"""Decoders: a batch's encoded images in, its model input (float32 NCHW, normalised) out.

Every decoder implements `protocol.BatchDecoder`, which is all `pipeline.batches` knows of them:
- `cpu.CpuDecoder`: Pillow on the rank's worker threads, or on decode processes they feed (`procs`);
- `gpu.GpuDecoder`: a GPU library (`library.GpuLibrary`: nvImageCodec's C API `hwjpeg`, or torchvision's
  nvJPEG) decodes on the rank's GPU, `tensorops` resizes and normalises there, and the files a GPU decoder must
  not take (`routing`) or rejects go to the CPU path.
torch and the GPU libraries are imported only when a GPU decoder opens, so `import batchscore` needs neither.
"""
