/* A batch of JPEGs through nvImageCodec's C API in one call, for batchscore/decode/hwjpeg.py (loaded with ctypes,
   which lets go of the interpreter lock for the whole call).

   Why: nvImageCodec's Python `decode` takes the interpreter lock back once per image, so a rank's other Python
   threads (read worker, loop) stretch every batch's call (docs/dev/decisions/0003). Here a batch is two calls:
   `hwjpeg_parse` (code streams and sizes) and `hwjpeg_decode` (into device buffers the caller allocated), each
   without the lock. Two decoders share the parsed code streams: the hardware one (step 0) and the CUDA one
   (step 1). Progressive JPEGs, which the hardware decoder refuses, go to the CUDA one while the hardware one
   decodes the rest, so the two run side by side; the CUDA one then retries what the hardware one failed
   (docs/dev/decisions/0015).

   Built when the package is installed (setup.py, an optional extension) against nvimgcodec.h, not linked against
   libnvimgcodec: the caller loads that library (RTLD_GLOBAL) first. Only the JPEG extension is loaded, so the
   instance does not try (and log failing to load) the JPEG 2000 and TIFF ones. Plain C: one build serves every
   Python. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

#include "nvimgcodec.h"

typedef struct {
    nvimgcodecInstance_t instance;
    nvimgcodecExtension_t extension;  /* the JPEG extension, the only one loaded */
    void* module;                     /* its shared library (dlopen) */
    nvimgcodecDecoder_t decoders[2];  /* hardware, CUDA; NULL where this GPU or library has none */
    int capacity;                     /* handles below, kept and reused from batch to batch */
    nvimgcodecCodeStream_t* streams;
    nvimgcodecImage_t* images;
    nvimgcodecProcessingStatus_t* status;
    uint8_t* progressive;             /* per parsed image: its frame is progressive (SOF2) */
} hwjpeg_t;

static void hwjpeg_free_handles(hwjpeg_t* h)
{
    for (int i = 0; i < h->capacity; i++) {
        if (h->streams[i]) nvimgcodecCodeStreamDestroy(h->streams[i]);
        if (h->images[i]) nvimgcodecImageDestroy(h->images[i]);
    }
    free(h->streams);
    free(h->images);
    free(h->status);
    free(h->progressive);
    h->streams = NULL;
    h->images = NULL;
    h->status = NULL;
    h->progressive = NULL;
    h->capacity = 0;
}

void hwjpeg_close(hwjpeg_t* h)
{
    if (!h) return;
    hwjpeg_free_handles(h);
    for (int k = 0; k < 2; k++)
        if (h->decoders[k]) nvimgcodecDecoderDestroy(h->decoders[k]);
    if (h->extension) nvimgcodecExtensionDestroy(h->extension);
    if (h->instance) nvimgcodecInstanceDestroy(h->instance);
    if (h->module) dlclose(h->module);
    free(h);
}

/* The version of nvimgcodec.h this was built with (MAKE_SEMANTIC_VERSION), and of the library loaded. */
int hwjpeg_versions(uint32_t* header, uint32_t* library)
{
    nvimgcodecProperties_t props = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_PROPERTIES, .struct_size = sizeof(nvimgcodecProperties_t)};
    *header = NVIMGCODEC_VER;
    *library = 0;
    nvimgcodecStatus_t s = nvimgcodecGetProperties(&props);
    if (s == NVIMGCODEC_STATUS_SUCCESS) *library = props.version;
    return s;
}

static nvimgcodecDecoder_t hwjpeg_decoder(nvimgcodecInstance_t instance, int device, int cpu_threads,
                                          nvimgcodecBackendKind_t kind, int* status)
{
    nvimgcodecBackend_t backend = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_BACKEND, .struct_size = sizeof(nvimgcodecBackend_t)};
    backend.kind = kind;
    backend.params.struct_type = NVIMGCODEC_STRUCTURE_TYPE_BACKEND_PARAMS;
    backend.params.struct_size = sizeof(nvimgcodecBackendParams_t);
    backend.params.load_hint = 1.0f;
    backend.params.load_hint_policy = NVIMGCODEC_LOAD_HINT_POLICY_FIXED;
    nvimgcodecExecutionParams_t exec = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_EXECUTION_PARAMS, .struct_size = sizeof(nvimgcodecExecutionParams_t)};
    exec.max_num_cpu_threads = cpu_threads;
    exec.device_id = device;
    exec.num_backends = 1;
    exec.backends = &backend;
    nvimgcodecDecoder_t decoder = NULL;
    /* No interpolating chroma upsampling (nvImageCodec's default, libjpeg's "fancy" one): with it nvJPEG's
       hardware path waited behind the engine's kernels image by image (docs/dev/decisions/0016). */
    *status = nvimgcodecDecoderCreate(instance, &decoder, &exec, ":fancy_upsampling=0");
    return *status == NVIMGCODEC_STATUS_SUCCESS ? decoder : NULL;
}

/* An instance with the JPEG extension at `extension` (its shared library) only, and its hardware and CUDA
   decoders on `device`. *out is NULL on failure and the status says which step failed: 100 + status for the
   instance, 300 for loading the extension's library, 400 + status for the extension, 200 + the CUDA decoder's
   status when neither decoder opens. step_status[k]: each decoder's creation status (0: it opened). */
int hwjpeg_open(hwjpeg_t** out, int device, int cpu_threads, const char* extension, int* step_status)
{
    *out = NULL;
    hwjpeg_t* h = calloc(1, sizeof(hwjpeg_t));
    if (!h) return NVIMGCODEC_STATUS_ALLOCATOR_FAILURE;
    nvimgcodecInstanceCreateInfo_t info = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .struct_size = sizeof(nvimgcodecInstanceCreateInfo_t)};
    info.load_builtin_modules = 1;
    info.load_extension_modules = 0;  /* no discovery: the JPEG extension is created below */
    nvimgcodecStatus_t s = nvimgcodecInstanceCreate(&h->instance, &info);
    if (s != NVIMGCODEC_STATUS_SUCCESS) {
        hwjpeg_close(h);
        return 100 + s;
    }
    h->module = dlopen(extension, RTLD_NOW | RTLD_LOCAL);
    nvimgcodecExtensionModuleEntryFunc_t entry =
        h->module ? (nvimgcodecExtensionModuleEntryFunc_t)dlsym(h->module, "nvimgcodecExtensionModuleEntry") : NULL;
    if (!entry) {
        hwjpeg_close(h);
        return 300;
    }
    nvimgcodecExtensionDesc_t desc = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_EXTENSION_DESC, .struct_size = sizeof(nvimgcodecExtensionDesc_t)};
    s = entry(&desc);
    if (s == NVIMGCODEC_STATUS_SUCCESS) s = nvimgcodecExtensionCreate(h->instance, &h->extension, &desc);
    if (s != NVIMGCODEC_STATUS_SUCCESS) {
        hwjpeg_close(h);
        return 400 + s;
    }
    const nvimgcodecBackendKind_t kinds[2] = {NVIMGCODEC_BACKEND_KIND_HW_GPU_ONLY, NVIMGCODEC_BACKEND_KIND_HYBRID_CPU_GPU};
    for (int k = 0; k < 2; k++)
        h->decoders[k] = hwjpeg_decoder(h->instance, device, cpu_threads, kinds[k], &step_status[k]);
    if (!h->decoders[0] && !h->decoders[1]) {
        s = step_status[1];
        hwjpeg_close(h);
        return 200 + s;
    }
    *out = h;
    return 0;
}

/* Let go of step k's decoder (one that did not decode the probe image). */
void hwjpeg_drop(hwjpeg_t* h, int step)
{
    if (h->decoders[step]) nvimgcodecDecoderDestroy(h->decoders[step]);
    h->decoders[step] = NULL;
}

static int hwjpeg_reserve(hwjpeg_t* h, int n)
{
    if (n <= h->capacity) return 0;
    nvimgcodecCodeStream_t* streams = realloc(h->streams, n * sizeof(*streams));
    if (streams) h->streams = streams;
    nvimgcodecImage_t* images = realloc(h->images, n * sizeof(*images));
    if (images) h->images = images;
    nvimgcodecProcessingStatus_t* status = realloc(h->status, 2 * n * sizeof(*status));  /* two decoders' */
    if (status) h->status = status;
    uint8_t* progressive = realloc(h->progressive, n);
    if (progressive) h->progressive = progressive;
    if (!streams || !images || !status || !progressive) return -1;
    memset(h->streams + h->capacity, 0, (n - h->capacity) * sizeof(*streams));
    memset(h->images + h->capacity, 0, (n - h->capacity) * sizeof(*images));
    h->capacity = n;
    return 0;
}

/* 1 when the JPEG's frame is progressive (SOF2): its marker segments are walked up to the frame header. */
static uint8_t hwjpeg_progressive(const unsigned char* d, size_t n)
{
    size_t pos = 2;
    while (pos + 4 <= n && d[pos] == 0xFF) {
        unsigned char m = d[pos + 1];
        if (m == 0xFF) {  /* fill byte */
            pos++;
        } else if (m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) {  /* markers without a length */
            pos += 2;
        } else if (m == 0xC2) {
            return 1;
        } else if (m == 0xDA || (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)) {
            return 0;  /* another frame type, or a scan before any frame */
        } else {
            pos += 2 + ((size_t)d[pos + 2] << 8 | d[pos + 3]);
        }
    }
    return 0;
}

/* Parse n JPEGs: hw[2i], hw[2i+1] = the height and width decode gives (EXIF orientation applied), 0, 0 where
   nvImageCodec cannot parse the image. The code streams stay for the next hwjpeg_decode; `data` must too. */
int hwjpeg_parse(hwjpeg_t* h, int n, const unsigned char* const* data, const size_t* sizes, uint32_t* hw)
{
    if (hwjpeg_reserve(h, n)) return NVIMGCODEC_STATUS_ALLOCATOR_FAILURE;
    for (int i = 0; i < n; i++) {
        hw[2 * i] = hw[2 * i + 1] = 0;
        h->progressive[i] = hwjpeg_progressive(data[i], sizes[i]);
        if (nvimgcodecCodeStreamCreateFromHostMem(h->instance, &h->streams[i], data[i], sizes[i], NULL)
            != NVIMGCODEC_STATUS_SUCCESS) {
            continue;  /* a failed call leaves the handle as it was: still valid, or NULL */
        }
        nvimgcodecImageInfo_t info = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_IMAGE_INFO, .struct_size = sizeof(nvimgcodecImageInfo_t)};
        if (nvimgcodecCodeStreamGetImageInfo(h->streams[i], &info) != NVIMGCODEC_STATUS_SUCCESS
            || info.num_planes < 1) {
            continue;
        }
        uint32_t height = info.plane_info[0].height, width = info.plane_info[0].width;
        int turned = info.orientation.rotated == 90 || info.orientation.rotated == 270;
        hw[2 * i] = turned ? width : height;
        hw[2 * i + 1] = turned ? height : width;
    }
    return 0;
}

/* Start decoding m images with `decoder`; *future stays NULL when there is nothing to decode or the call failed. */
static void hwjpeg_start(nvimgcodecDecoder_t decoder, nvimgcodecCodeStream_t* streams, nvimgcodecImage_t* images,
                         int m, nvimgcodecFuture_t* future)
{
    *future = NULL;
    if (!m) return;
    nvimgcodecDecodeParams_t params = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_DECODE_PARAMS, .struct_size = sizeof(nvimgcodecDecodeParams_t)};
    params.apply_exif_orientation = 1;
    if (nvimgcodecDecoderDecode(decoder, streams, images, m, &params, future) != NVIMGCODEC_STATUS_SUCCESS && *future) {
        nvimgcodecFutureDestroy(*future);
        *future = NULL;
    }
}

/* Wait for a started decode of the images at `index` and set step[index[k]] = `label` where image k decoded. */
static void hwjpeg_finish(nvimgcodecFuture_t future, const int* index, int m, int8_t label,
                          nvimgcodecProcessingStatus_t* status, int8_t* step)
{
    if (!future) return;
    size_t got = (size_t)m;
    nvimgcodecFutureWaitForAll(future);
    if (nvimgcodecFutureGetProcessingStatus(future, status, &got) == NVIMGCODEC_STATUS_SUCCESS)
        for (size_t k = 0; k < got; k++)
            if (status[k] == NVIMGCODEC_PROCESSING_STATUS_SUCCESS) step[index[k]] = label;
    nvimgcodecFutureDestroy(future);
}

/* Decode the n code streams of the last hwjpeg_parse into buffers[i] (device memory, interleaved RGB uint8,
   hw[2i] rows of hw[2i+1] * 3 bytes), ordered on `cuda_stream`, with the steps whose bit is set in `mask`.
   step[i] = the step that decoded image i, -1 where none did (or its buffer is NULL). With both steps, the
   progressive images go to the CUDA decoder while the hardware one decodes the others, and the CUDA decoder then
   retries those the hardware one failed. Returns once the host's part is done; the device's is queued on
   `cuda_stream`. A decoder's failed call leaves its images at -1 (the caller's CPU path takes them). */
int hwjpeg_decode(hwjpeg_t* h, int mask, int n, const uint32_t* hw, void* const* buffers, cudaStream_t cuda_stream,
                  int8_t* step)
{
    int use_hw = (mask & 1) && h->decoders[0], use_cuda = (mask & 2) && h->decoders[1];
    if (n > h->capacity || (!use_hw && !use_cuda)) return NVIMGCODEC_STATUS_INVALID_PARAMETER;
    /* two groups, packed: [0, a) for the hardware decoder, [n, n + b) for the CUDA one */
    int* index = malloc((n ? 2 * n : 1) * sizeof(int));
    nvimgcodecCodeStream_t* streams = malloc((n ? 2 * n : 1) * sizeof(*streams));
    nvimgcodecImage_t* images = malloc((n ? 2 * n : 1) * sizeof(*images));
    if (!index || !streams || !images) {
        free(index);
        free(streams);
        free(images);
        return NVIMGCODEC_STATUS_ALLOCATOR_FAILURE;
    }
    int a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        step[i] = -1;
        if (!buffers[i] || !hw[2 * i]) continue;
        nvimgcodecImageInfo_t info = {.struct_type = NVIMGCODEC_STRUCTURE_TYPE_IMAGE_INFO, .struct_size = sizeof(nvimgcodecImageInfo_t)};
        info.color_spec = NVIMGCODEC_COLORSPEC_SRGB;
        info.chroma_subsampling = NVIMGCODEC_SAMPLING_NONE;
        info.sample_format = NVIMGCODEC_SAMPLEFORMAT_I_RGB;
        info.orientation.struct_type = NVIMGCODEC_STRUCTURE_TYPE_ORIENTATION;
        info.orientation.struct_size = sizeof(nvimgcodecOrientation_t);
        info.num_planes = 1;
        nvimgcodecImagePlaneInfo_t* plane = &info.plane_info[0];
        plane->struct_type = NVIMGCODEC_STRUCTURE_TYPE_IMAGE_PLANE_INFO;
        plane->struct_size = sizeof(nvimgcodecImagePlaneInfo_t);
        plane->height = hw[2 * i];
        plane->width = hw[2 * i + 1];
        plane->row_stride = (size_t)hw[2 * i + 1] * 3;
        plane->num_channels = 3;
        plane->sample_type = NVIMGCODEC_SAMPLE_DATA_TYPE_UINT8;
        plane->precision = 8;
        info.buffer = buffers[i];
        info.buffer_kind = NVIMGCODEC_IMAGE_BUFFER_KIND_STRIDED_DEVICE;
        info.cuda_stream = cuda_stream;
        if (nvimgcodecImageCreate(h->instance, &h->images[i], &info) != NVIMGCODEC_STATUS_SUCCESS) continue;
        int k = use_hw && !(use_cuda && h->progressive[i]) ? a++ : n + b++;
        index[k] = i;
        streams[k] = h->streams[i];
        images[k] = h->images[i];
    }
    nvimgcodecFuture_t on_cuda = NULL, on_hw = NULL;
    if (use_cuda) hwjpeg_start(h->decoders[1], streams + n, images + n, b, &on_cuda);  /* first: it is the slower */
    if (use_hw) hwjpeg_start(h->decoders[0], streams, images, a, &on_hw);
    hwjpeg_finish(on_hw, index, a, 0, h->status, step);
    hwjpeg_finish(on_cuda, index + n, b, 1, h->status + n, step);
    if (use_hw && use_cuda) {  /* what the hardware decoder failed, on the CUDA one */
        int c = 0;
        for (int k = 0; k < a; k++)
            if (step[index[k]] < 0) {
                index[n + c] = index[k];
                streams[n + c] = streams[k];
                images[n + c] = images[k];
                c++;
            }
        hwjpeg_start(h->decoders[1], streams + n, images + n, c, &on_cuda);
        hwjpeg_finish(on_cuda, index + n, c, 1, h->status + n, step);
    }
    free(index);
    free(streams);
    free(images);
    return 0;
}
