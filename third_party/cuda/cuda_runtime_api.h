/* The one CUDA type nvimgcodec.h needs, so that hwjpeg.c builds without the CUDA toolkit. */
typedef struct CUstream_st* cudaStream_t;
