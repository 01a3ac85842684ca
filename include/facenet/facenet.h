/*
 * facenet.h - the one public header of libfacenet.
 *
 * libfacenet runs pretrained face models (MTCNN, MobileFaceNet, the dlib
 * ResNet) from their own file formats, after checking that every model file
 * is byte-for-byte the one pinned in the model manifest.
 *
 * Conventions, for every function in this header:
 *   - Fallible calls return a facenet_status. FACENET_OK is 0.
 *   - They also take an optional `facenet_error *err` as their last argument.
 *     When it is not NULL and the call fails, it receives the code and a
 *     human-readable message naming the file, tensor or value at fault.
 *     Messages never contain image pixels, embeddings or keys.
 *   - Output handles are written only on success; on failure they are NULL.
 *   - Every handle returned through `**out` is owned by the caller and freed
 *     with its matching *_free function. *_free(NULL) is a no-op.
 *
 * Thread safety:
 *   - A facenet_model is immutable after loading: any number of threads may
 *     create sessions from it and run them concurrently.
 *   - A facenet_session is the per-call workspace: use one session per thread.
 *     A session may own a thread pool (facenet_session_set_threads); its
 *     worker threads only ever run that session's layers, during its run.
 *   - No function keeps hidden global state.
 *
 * Environment (read when a model is loaded or a session created):
 *   FACENET_BACKEND  compute backend for models loaded without naming one:
 *                    "reference" (portable C, the numeric oracle) or "avx2"
 *                    (x86-64 with AVX2 + FMA). Default: the best one this
 *                    CPU can run. A name that cannot run fails the load.
 *   FACENET_THREADS  threads per session, and per detector, when the
 *                    caller does not say (1..256). Default: 1.
 *   FACENET_PRECISION  "fp32" (the default) or "int8" for every model
 *                    loaded without naming a backend, or a list such as
 *                    "mobilefacenet:int8,mtcnn:int8" (a manifest name, or
 *                    "mtcnn" for its three networks; later entries win).
 *                    int8 runs on the "avx2-int8" backend (8-bit integer
 *                    convolutions, about 0.997 cosine to fp32 embeddings:
 *                    not exact) whatever FACENET_BACKEND says. An unknown
 *                    model or precision name fails every load, naming it.
 */
#ifndef FACENET_FACENET_H
#define FACENET_FACENET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FACENET_VERSION_MAJOR 0
#define FACENET_VERSION_MINOR 1
#define FACENET_VERSION_PATCH 0
#define FACENET_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                   */
/* ------------------------------------------------------------------------ */

typedef enum facenet_status {
    FACENET_OK = 0,
    FACENET_ERR_INVALID_ARGUMENT = 1, /* a caller passed a bad value       */
    FACENET_ERR_NO_MEMORY = 2,        /* an allocation failed              */
    FACENET_ERR_IO = 3,               /* a file could not be read/written  */
    FACENET_ERR_FORMAT = 4,           /* malformed or truncated input data */
    FACENET_ERR_UNSUPPORTED = 5,      /* valid, but not something we run   */
    FACENET_ERR_INTEGRITY = 6,        /* SHA-256 does not match the pin    */
    FACENET_ERR_LIMIT = 7,            /* input exceeds a configured limit  */
    FACENET_ERR_NOT_FOUND = 8,        /* a named file or model is missing  */
    FACENET_ERR_SHAPE = 9,            /* tensor shapes do not fit          */
    FACENET_ERR_EXTERNAL = 10,        /* a helper program (npm) failed     */
    FACENET_ERR_INTERNAL = 11         /* a bug: please report it           */
} facenet_status;

/* A short, static, English description of a status code. Never NULL. */
const char *facenet_strerror(facenet_status status);

#define FACENET_ERROR_MESSAGE_MAX 512

/* Filled by failing calls when passed non-NULL. Plain data: no freeing. */
typedef struct facenet_error {
    facenet_status code;
    char message[FACENET_ERROR_MESSAGE_MAX];
} facenet_error;

/* ------------------------------------------------------------------------ */
/* Model manifest: which model files exist, where they come from, and the   */
/* SHA-256 each must have. The manifest is compiled into the library.       */
/* ------------------------------------------------------------------------ */

typedef enum facenet_model_format {
    FACENET_FORMAT_TFLITE = 1,  /* TensorFlow Lite flatbuffer             */
    FACENET_FORMAT_DLIB_DAT = 2, /* dlib serialised ResNet (float32)      */
    FACENET_FORMAT_TFJS = 3      /* TF.js weights manifest + .bin shards   */
} facenet_model_format;

/* Read-only description of one pinned model; lives as long as the library. */
typedef struct facenet_model_info {
    const char *name;          /* e.g. "mobilefacenet", "mtcnn-pnet"       */
    const char *role;          /* "detector" or "embedder"                 */
    facenet_model_format format;
    const char *package;       /* npm package@version                      */
    const char *package_path;  /* path of the file inside the tarball      */
    const char *file_name;     /* name in the model cache directory        */
    const char *sha256;        /* 64 lowercase hex digits                  */
    const char *extra_file;    /* TF.js weight shard, or NULL              */
    const char *extra_package_path;
    const char *extra_sha256;
    const char *license;       /* SPDX id of the weights' licence          */
    const char *provenance;    /* one line: who trained it, on what        */
    int input_width, input_height, input_channels;
    const char *color_order;   /* "RGB"                                    */
    float input_mean[3];       /* network input = (v - mean) * scale       */
    float input_scale;
    const char *alignment;     /* "arcface112", "dlib150", "none"          */
    int embedding_dim;         /* 0 for detectors                          */
    const char *metric;        /* "cosine" for embedders                   */
    float threshold;           /* default verification threshold (cosine
                                  similarity) at best LFW accuracy; 0 where
                                  not calibrated or not applicable        */
    float threshold_strict;    /* the stricter threshold where LFW's false
                                  accept rate is 1e-3; 0 if not calibrated */
} facenet_model_info;

/* Number of models in the manifest, and the i-th one (NULL when out of
 * range). The returned pointer is static. */
size_t facenet_model_count(void);
const facenet_model_info *facenet_model_at(size_t index);
/* Look a model up by name; NULL if there is none. */
const facenet_model_info *facenet_model_find(const char *name);

/* The model cache directory: $FACENET_MODEL_DIR, else
 * $XDG_CACHE_HOME/facenet/models, else $HOME/.cache/facenet/models.
 * Writes a NUL-terminated path into buf. */
facenet_status facenet_model_dir(char *buf, size_t buf_size,
                                 facenet_error *err);

/* Fetch every pinned model (or only `name` when not NULL) into `dir` with
 * `npm pack`, extract only the pinned paths, and verify each SHA-256. A file
 * already present with the right hash is not fetched again. A file with the
 * wrong hash is never left in place under its final name. `log` (may be
 * NULL) receives one progress line per file. */
facenet_status facenet_models_fetch(const char *dir, const char *name,
                                    void (*log)(void *ctx, const char *line),
                                    void *log_ctx, facenet_error *err);

/* Check the SHA-256 of one model's files in `dir`. A missing, truncated or
 * altered file fails with FACENET_ERR_NOT_FOUND or FACENET_ERR_INTEGRITY and
 * a message naming the file and both hashes. */
facenet_status facenet_model_verify(const char *dir,
                                    const facenet_model_info *info,
                                    facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Engine: loaded networks and per-thread sessions                          */
/* ------------------------------------------------------------------------ */

typedef struct facenet_model facenet_model;     /* immutable network      */
typedef struct facenet_session facenet_session; /* per-thread workspace   */

/* Load a pinned model from `dir`. The file bytes are hashed and compared
 * with the manifest before any parsing. */
facenet_status facenet_model_load(const char *dir,
                                  const facenet_model_info *info,
                                  facenet_model **out, facenet_error *err);

/* Load a model file of a known format with no pin (for development and
 * tests). For FACENET_FORMAT_TFJS, `path` is the weights manifest JSON and
 * the shards are found beside it. `expected_sha256` may be NULL to skip the
 * check; when given, it is enforced before parsing. */
facenet_status facenet_model_load_file(const char *path,
                                       facenet_model_format format,
                                       const char *expected_sha256,
                                       facenet_model **out,
                                       facenet_error *err);

/* facenet_model_load with a named compute backend ("reference", "avx2",
 * or "avx2-int8", which facenet_backend_name never lists because it is not
 * exact), or NULL for the default ($FACENET_PRECISION, then
 * $FACENET_BACKEND, else the best available).
 * Fails with FACENET_ERR_UNSUPPORTED when that backend cannot run here. */
facenet_status facenet_model_load_backend(const char *dir,
                                          const facenet_model_info *info,
                                          const char *backend,
                                          facenet_model **out,
                                          facenet_error *err);

void facenet_model_free(facenet_model *model);

/* Name of the backend the model's layers run on (static string). */
const char *facenet_model_backend(const facenet_model *model);

/* Backends compiled into this library, best last: the index-th name, or
 * NULL past the end. */
const char *facenet_backend_name(int index);
/* 1 if the named backend is compiled in and this CPU can run it. */
int facenet_backend_available(const char *name);

/* Number of graph inputs / outputs, and the name of each output. */
int facenet_model_output_count(const facenet_model *model);
const char *facenet_model_output_name(const facenet_model *model, int index);
/* Multiply-accumulate count of one forward pass at the given NHWC input
 * shape, or -1 if the shape does not fit the network. */
int64_t facenet_model_macs(const facenet_model *model, int n, int h, int w,
                           int c);

facenet_status facenet_session_create(const facenet_model *model,
                                      facenet_session **out,
                                      facenet_error *err);
void facenet_session_free(facenet_session *session);

/* Threads the session's layers run on, the calling thread included: 1 runs
 * everything in the caller; 0 means $FACENET_THREADS, else 1 (the value a
 * new session starts with). Layers are split over output rows and
 * channels, so a batch is shared by all threads too. The reference
 * backend always runs on one thread. */
facenet_status facenet_session_set_threads(facenet_session *session,
                                           int threads, facenet_error *err);
int facenet_session_threads(const facenet_session *session);

/* Run the network on one float32 NHWC input of shape [n, h, w, c]. The
 * first call with a new shape plans memory; later calls reuse the plan.
 * Output pointers stay valid until the next run or free of this session. */
facenet_status facenet_session_run(facenet_session *session,
                                   const float *input, int n, int h, int w,
                                   int c, facenet_error *err);

/* Output `index` of the last run: its data and its shape (up to 4 dims;
 * unused trailing dims are reported as 1). */
facenet_status facenet_session_output(const facenet_session *session,
                                      int index, const float **data,
                                      int dims[4], int *rank,
                                      facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Images                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct facenet_image facenet_image; /* decoded 8-bit RGB, upright */

/* Formats, for facenet_image_limits.formats (a bitmask). */
#define FACENET_IMAGE_JPEG 0x1u
#define FACENET_IMAGE_PNG 0x2u
#define FACENET_IMAGE_WEBP 0x4u
#define FACENET_IMAGE_PNM 0x8u /* binary PGM/PPM */
#define FACENET_IMAGE_ALL 0xFu

/* Checked from the file header before any pixel memory is allocated. */
typedef struct facenet_image_limits {
    size_t max_bytes;      /* encoded size; default 128 MiB              */
    uint64_t max_pixels;   /* width * height; default 40,000,000         */
    unsigned formats;      /* allowed formats; default FACENET_IMAGE_ALL */
    int apply_orientation; /* honour JPEG Exif orientation; default 1    */
} facenet_image_limits;

void facenet_image_limits_default(facenet_image_limits *limits);

/* Decode JPEG, PNG, WebP or PGM/PPM, told apart by content. `limits` may
 * be NULL for the defaults. Corrupt or truncated data fails with
 * FACENET_ERR_FORMAT, an unknown or disallowed format with
 * FACENET_ERR_UNSUPPORTED, a limit with FACENET_ERR_LIMIT. */
facenet_status facenet_image_decode(const void *data, size_t size,
                                    const facenet_image_limits *limits,
                                    facenet_image **out, facenet_error *err);
facenet_status facenet_image_load(const char *path,
                                  const facenet_image_limits *limits,
                                  facenet_image **out, facenet_error *err);
/* Wrap caller-provided RGB pixels (copied; stride = bytes per row). */
facenet_status facenet_image_from_rgb(const uint8_t *rgb, int width,
                                      int height, size_t stride,
                                      facenet_image **out, facenet_error *err);
int facenet_image_width(const facenet_image *image);
int facenet_image_height(const facenet_image *image);
/* Row-major RGB pixels, 3 * width bytes per row; owned by the image. */
const uint8_t *facenet_image_pixels(const facenet_image *image);
void facenet_image_free(facenet_image *image);

/* ------------------------------------------------------------------------ */
/* Detection (MTCNN)                                                        */
/* ------------------------------------------------------------------------ */

typedef struct facenet_face {
    float box[4];          /* x1, y1, x2, y2 in image pixels              */
    float score;           /* detector confidence, 0..1                   */
    float landmarks[5][2]; /* left eye, right eye, nose, left and right
                              mouth corner, as seen in the image: (x, y) */
} facenet_face;

typedef struct facenet_detect_options {
    int min_size;         /* smallest face, pixels; default 20            */
    float thresholds[3];  /* stage thresholds; default 0.6, 0.7, 0.7      */
    float factor;         /* pyramid step; default 0.709                  */
    long long max_level_pixels; /* pyramid levels above this are skipped;
                                   default 4,000,000 (see docs)          */
} facenet_detect_options;

void facenet_detect_options_default(facenet_detect_options *options);

/* A detector holds the three MTCNN networks (pinned and verified at load)
 * and their sessions: use one detector per thread. */
typedef struct facenet_detector facenet_detector;

facenet_status facenet_detector_create(const char *model_dir,
                                       facenet_detector **out,
                                       facenet_error *err);
void facenet_detector_free(facenet_detector *detector);

/* Threads one detection runs on, the calling thread included (0: read
 * $FACENET_THREADS again, default 1; what a new detector starts with).
 * Pyramid levels and batches of face crops are spread over them; results
 * do not depend on the count. On failure the detector keeps its threads. */
facenet_status facenet_detector_set_threads(facenet_detector *detector,
                                            int threads, facenet_error *err);
int facenet_detector_threads(const facenet_detector *detector);

/* Name of the backend the detector's networks run on ("reference",
 * "avx2" or "avx2-int8"; see FACENET_PRECISION), or "mixed" when its
 * three networks were loaded on different ones. A static string. */
const char *facenet_detector_backend(const facenet_detector *detector);

/* Find faces. On success *faces is a new array of *n_faces faces in
 * descending score order (NULL when none), freed with free(). `options`
 * may be NULL for the defaults. */
facenet_status facenet_detect(facenet_detector *detector,
                              const facenet_image *image,
                              const facenet_detect_options *options,
                              facenet_face **faces, size_t *n_faces,
                              facenet_error *err);

/* The face align_dataset_mtcnn would pick among several: the largest
 * area minus twice the squared offset of its centre from the image
 * centre. Returns an index, or -1 when n_faces is 0. */
int facenet_pick_face(const facenet_face *faces, size_t n_faces, int width,
                      int height);

/* ------------------------------------------------------------------------ */
/* Embedding                                                                */
/* ------------------------------------------------------------------------ */

/* An embedder holds one embedding network and its session: one per
 * thread. */
typedef struct facenet_embedder facenet_embedder;

/* `model_name` is a manifest name ("mobilefacenet", "dlib-resnet",
 * "dlib-resnet-tfjs") or NULL for the default, "mobilefacenet". The
 * embedder's info (facenet_embedder_info) carries the thresholds of
 * facenet_model_thresholds(model_dir, info, 0): a malformed
 * MODEL_DIR/thresholds.json makes creation fail. */
facenet_status facenet_embedder_create(const char *model_dir,
                                       const char *model_name,
                                       facenet_embedder **out,
                                       facenet_error *err);
void facenet_embedder_free(facenet_embedder *embedder);
/* The embedder's model description, with its resolved thresholds. Owned
 * by the embedder: valid until facenet_embedder_free(e). */
const facenet_model_info *facenet_embedder_info(const facenet_embedder *e);
int facenet_embedder_dim(const facenet_embedder *embedder);
/* Name of the backend the embedding network runs on ("reference", "avx2"
 * or "avx2-int8"). A static string. */
const char *facenet_embedder_backend(const facenet_embedder *embedder);

/* Threads one embedding call runs on, the calling thread included (0:
 * $FACENET_THREADS, else 1: what a new embedder starts with). Results do
 * not depend on the count. Tools that run one embedder per worker thread
 * set 1, so that the workers, not the layers, fill the cores. */
facenet_status facenet_embedder_set_threads(facenet_embedder *embedder,
                                            int threads, facenet_error *err);

/* Test-time augmentation as dlib's num_jitters: with jitters = N > 0,
 * every later facenet_embed / facenet_embed_aligned call embeds N
 * jittered copies of each aligned crop (a small random shift, scale and
 * rotation, mirrored half of the time: dlib's jitter_image ranges) instead
 * of the crop itself, sums their raw outputs (and, with flip, those of
 * their mirrors) and normalises. The copies come from a fixed seed: the
 * same face gives the same embedding on every run. Costs N network runs
 * per face (2N with flip). 0 (the default) turns it off; at most
 * FACENET_MAX_JITTERS. Jittered embeddings are not the plain ones: the
 * calibrated thresholds were measured without jitter. */
#define FACENET_MAX_JITTERS 100
facenet_status facenet_embedder_set_jitter(facenet_embedder *embedder,
                                           int jitters, facenet_error *err);
int facenet_embedder_jitter(const facenet_embedder *embedder);

/* Verification thresholds of an embedding model (cosine similarities;
 * 0 means "none calibrated") and where they come from. */
#define FACENET_THRESHOLDS_FILE "thresholds.json"
#define FACENET_THRESHOLD_SOURCE_MAX 512
typedef struct facenet_thresholds {
    float threshold;        /* best accuracy on the calibration pairs      */
    float threshold_strict; /* at the calibration's false-accept target    */
    char source[FACENET_THRESHOLD_SOURCE_MAX]; /* "manifest" or the file,
                                                  entry and pairs used      */
} facenet_thresholds;

/* The thresholds to use for `info`'s embeddings, made with or without
 * flip. The manifest's LFW-calibrated values are the defaults; the file
 * MODEL_DIR/thresholds.json (written by `facenet validate --calibrate`)
 * overrides them when it has an entry for the model: "NAME+flip" for
 * flipped embeddings (else "NAME"), "NAME" otherwise. A missing file or
 * entry gives the manifest's values; a file that exists but cannot be
 * read, is malformed or holds an out-of-range value fails (FACENET_ERR_IO
 * or FACENET_ERR_FORMAT, naming the file) instead of falling back, so a
 * broken calibration is never silently replaced. `model_dir` may be NULL
 * (manifest values only). */
facenet_status facenet_model_thresholds(const char *model_dir,
                                        const facenet_model_info *info,
                                        int flip, facenet_thresholds *out,
                                        facenet_error *err);

/* The same for embeddings made with `jitters` jittered copies
 * (facenet_embedder_set_jitter; 0 is facenet_model_thresholds). Jittered
 * embeddings have their own distribution, so there is no fallback: only
 * the file's "NAME+jitterN" entry ("NAME+flip+jitterN" with flip, then
 * "NAME+jitterN"), written by `facenet validate --calibrate --jitter N`,
 * is used. Without one, both thresholds are 0 ("none calibrated") and the
 * call succeeds, so the caller fails closed as for any model without a
 * threshold. */
facenet_status facenet_model_thresholds_jitter(const char *model_dir,
                                               const facenet_model_info *info,
                                               int flip, int jitters,
                                               facenet_thresholds *out,
                                               facenet_error *err);

/* Where the thresholds in facenet_embedder_info(e) came from (see
 * facenet_model_thresholds; the embedder resolves them without flip when
 * it is created). Static for the embedder's lifetime. */
const char *facenet_embedder_threshold_source(const facenet_embedder *e);

/* Align each face by its landmarks and embed all of them in one network
 * call. `out` receives n_faces * dim floats; every embedding has unit L2
 * norm. With flip != 0 the mirrored crop's raw output is added before
 * normalising (test-time augmentation). */
facenet_status facenet_embed(facenet_embedder *embedder,
                             const facenet_image *image,
                             const facenet_face *faces, size_t n_faces,
                             int flip, float *out, facenet_error *err);

/* Embed crops that are already aligned to the model's input size: n
 * crops of size*size*3 floats, RGB, values 0..255. */
facenet_status facenet_embed_aligned(facenet_embedder *embedder,
                                     const float *crops, size_t n, int flip,
                                     float *out, facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Verification                                                             */
/* ------------------------------------------------------------------------ */

/* Cosine similarity of two embeddings of `dim` floats, in [-1, 1]. For
 * unit embeddings, squared L2 distance = 2 - 2 * cosine. This library
 * states every threshold as a cosine similarity: higher means more alike,
 * and two faces match when the similarity is >= the threshold. */
float facenet_similarity(const float *a, const float *b, int dim);

/* ------------------------------------------------------------------------ */
/* Galleries: enrolled people, searched 1:N                                 */
/* ------------------------------------------------------------------------ */
/*
 * A gallery is one file (SQLite, WAL mode) holding collections -> subjects
 * (a name and optional JSON metadata) -> templates (one embedding each, with
 * the id of the model that made it, the preprocessing, and the SHA-256 of
 * the source image; images themselves are never stored).
 *
 * Encryption: every template is sealed with XChaCha20-Poly1305 under a
 * 32-byte key, bound to its row id, subject id, gallery id and model id;
 * subject names and metadata are stored in clear but authenticated (a keyed
 * BLAKE2b tag), so that a changed label is detected, not believed. A wrong
 * key fails at open with FACENET_ERR_INTEGRITY and reveals nothing. Keys
 * come from a key file or the environment, never from a command line.
 *
 * At open, every template is decrypted into an in-memory matrix: search is
 * exact (cosine similarity of unit vectors), optionally over an int8 or
 * 4-bit copy first, whose best candidates are rescored in float. A gallery holds the templates of exactly one
 * model: enrolling or searching with another model is refused.
 *
 * Thread safety: one facenet_gallery may be shared by threads. Searches run
 * concurrently with each other; enroll, remove, rekey, import and refresh
 * take the handle exclusively. Several processes may open the same file:
 * writers take turns (waiting up to 10 s), readers never block writers. A
 * handle's matrix is a snapshot: call facenet_gallery_refresh() to pick up
 * other processes' changes.
 *
 * Strings passed in are copied; strings handed to callbacks are valid only
 * during the callback. Messages never contain keys or embeddings.
 */

#define FACENET_GALLERY_KEY_BYTES 32
/* Subject and collection names: 1..255 bytes of valid UTF-8, no control
 * characters. Buffers of this size always hold one with its NUL. */
#define FACENET_GALLERY_NAME_MAX 256
#define FACENET_GALLERY_MODEL_ID_MAX 128
#define FACENET_GALLERY_METADATA_MAX 65536 /* bytes of JSON per subject */

typedef struct facenet_gallery facenet_gallery;

/* Read a key file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes
 * (surrounding whitespace ignored). The file must be a regular file owned by
 * the caller (or root) with no group/other permission bits, like an ssh key.
 * With key_file NULL the key comes from $FACENET_GALLERY_KEY (hex or base64)
 * instead; FACENET_ERR_NOT_FOUND when neither is available. */
facenet_status facenet_gallery_key_load(const char *key_file,
                                        uint8_t key[FACENET_GALLERY_KEY_BYTES],
                                        facenet_error *err);
/* Parse a key from text (hex or base64; raw bytes when len is 32 and the
 * text is neither). */
facenet_status facenet_gallery_key_parse(const char *text, size_t len,
                                         uint8_t key[FACENET_GALLERY_KEY_BYTES],
                                         facenet_error *err);
/* Write a new random key (hex) to `path`, created with mode 0600. An
 * existing file is never overwritten. */
facenet_status facenet_gallery_key_generate(const char *path,
                                            facenet_error *err);

/* The model id a gallery records: "<manifest name>@<first 16 hex digits of
 * the model file's SHA-256>", so a re-trained file with the same name is a
 * different model. */
facenet_status facenet_gallery_model_id(const facenet_model_info *info,
                                        char *buf, size_t size,
                                        facenet_error *err);

/* The preprocessing label a template records: how its embedding was made.
 * "mtcnn/<alignment>" (e.g. "mtcnn/arcface112"), then "+flip" when the
 * mirrored face was added, and the reduced precision of what ran in int8:
 * "mtcnn-int8/..." for the detector ("mtcnn-mixed/..." when only some of
 * its networks did) and "+int8" at the end for the embedder. fp32
 * templates keep the label they always had. Fails with FACENET_ERR_LIMIT
 * when `size` is too small. */
facenet_status facenet_gallery_preprocess_label(const facenet_detector *detector,
                                                const facenet_embedder *embedder,
                                                int flip, char *buf, size_t size,
                                                facenet_error *err);

/* Open flags. */
#define FACENET_GALLERY_CREATE 0x1u    /* create the file when missing     */
#define FACENET_GALLERY_READ_ONLY 0x2u /* never write (search, list)       */
#define FACENET_GALLERY_INT8 0x4u      /* keep an int8 copy for search     */
#define FACENET_GALLERY_INT4 0x8u      /* keep a 4-bit copy: the fastest
                                          scan (an eighth of the float
                                          matrix); used before int8      */

/* Open (or, with FACENET_GALLERY_CREATE, create) the gallery at `path`.
 * `key` must be FACENET_GALLERY_KEY_BYTES bytes. When the file is created,
 * model_id and dim are required and recorded; when it exists, a non-NULL
 * model_id must equal the recorded one (FACENET_ERR_UNSUPPORTED otherwise)
 * and dim may be 0. A file that is not a gallery, is corrupt or truncated fails with
 * FACENET_ERR_FORMAT and is never modified. */
facenet_status facenet_gallery_open(const char *path, const uint8_t *key,
                                    const char *model_id, int dim,
                                    unsigned flags, facenet_gallery **out,
                                    facenet_error *err);
/* Closing wipes the key and the decrypted matrix from memory. */
void facenet_gallery_close(facenet_gallery *gallery);

const char *facenet_gallery_model(const facenet_gallery *gallery);
int facenet_gallery_dim(const facenet_gallery *gallery);
/* Templates in the in-memory matrix. */
size_t facenet_gallery_size(const facenet_gallery *gallery);
/* The open-set threshold recorded in the gallery (cosine similarity). A new
 * gallery takes the 1:N threshold calibrated for its model on LFW (at most
 * 1% of strangers accepted against 1,680 enrolled people; MobileFaceNet
 * 0.616, well above its 1:1 threshold 0.40; dlib ResNet and its tfjs port
 * 0.954, above the dlib ResNet's 0.91). A model without such a
 * calibration leaves it unset (NaN), and searches that rely on it fail
 * until it is set: no decision without a calibration. Larger galleries
 * accept more strangers at the same threshold; calibrate on your own. */
float facenet_gallery_threshold(const facenet_gallery *gallery);
facenet_status facenet_gallery_set_threshold(facenet_gallery *gallery,
                                             float threshold,
                                             facenet_error *err);

typedef struct facenet_gallery_enrollment {
    const char *collection;    /* NULL: "default"                          */
    const char *subject;       /* created when new                         */
    const char *metadata_json; /* NULL, or a JSON object stored with a new
                                  subject (an existing one keeps its own)  */
    const char *model_id;      /* must equal the gallery's                 */
    const char *preprocess;    /* e.g. "mtcnn/arcface112"; NULL: ""         */
    const float *embeddings;   /* n * dim floats; normalised when stored    */
    size_t n;
    const char *const *image_sha256; /* NULL, or n digests (entries may be
                                        NULL): 64 lowercase hex digits      */
    int skip_existing;         /* a template of this subject with the same
                                  image digest is reused, not added again  */
} facenet_gallery_enrollment;

/* Add n templates to one subject, in one transaction: all or nothing. On
 * success template_ids (when not NULL) receives the n row ids. The call
 * returns after the transaction is durable on disk. */
facenet_status facenet_gallery_enroll(facenet_gallery *gallery,
                                      const facenet_gallery_enrollment *e,
                                      int64_t *template_ids,
                                      facenet_error *err);

/* Delete a subject and all its templates (or one template), then
 * checkpoint the write-ahead log, so that with SQLite's secure_delete the
 * bytes are gone from the gallery's files. *n_removed (may be NULL) counts
 * the templates removed. FACENET_ERR_NOT_FOUND when there is no such
 * subject or template. */
facenet_status facenet_gallery_remove_subject(facenet_gallery *gallery,
                                              const char *collection,
                                              const char *subject,
                                              size_t *n_removed,
                                              facenet_error *err);
facenet_status facenet_gallery_remove_template(facenet_gallery *gallery,
                                               int64_t template_id,
                                               facenet_error *err);

typedef struct facenet_gallery_match {
    int64_t subject_id;
    int64_t template_id; /* the subject's best-scoring template          */
    float score;         /* cosine similarity, exact (float)             */
    int accepted;        /* score >= the threshold in use                */
    char collection[FACENET_GALLERY_NAME_MAX];
    char subject[FACENET_GALLERY_NAME_MAX];
} facenet_gallery_match;

typedef struct facenet_gallery_search_options {
    int k;                  /* subjects to return, 1..1000; default 5     */
    float threshold;        /* open-set threshold; < -1 (the default):
                               the gallery's (an error when it is unset)  */
    const char *collection; /* NULL: every collection                     */
    int exact;              /* 1: scan the float matrix even when there is
                               a quantised copy (slower, same answers
                               but for near-ties)                         */
    int threads;            /* 0: all cores when the gallery is large     */
} facenet_gallery_search_options;

void facenet_gallery_search_options_default(
    facenet_gallery_search_options *options);

/* The top-k subjects for one query embedding of `dim` floats (normalised
 * here), best first, each scored by its best template. `matches` must hold
 * options->k entries; *n_matches receives how many were filled (fewer when
 * the gallery has fewer subjects). The query is "unknown" when
 * *n_matches == 0 or matches[0].accepted == 0. */
facenet_status facenet_gallery_search(
    facenet_gallery *gallery, const char *model_id, const float *query,
    int dim, const facenet_gallery_search_options *options,
    facenet_gallery_match *matches, size_t *n_matches, facenet_error *err);

/* 1:1 against one enrolled subject: the exact cosine similarity of the
 * query (`dim` floats, normalised here) to the subject's best template,
 * into *match (accepted: at least the gallery's open-set threshold, 0
 * when it has none; a 1:1 decision should use the model's verification
 * threshold instead). `collection` NULL means "default". Returns
 * FACENET_ERR_NOT_FOUND when there is no such subject or it has no
 * templates. Costs a walk over the row ids plus one dot product per
 * template of the subject, whatever the gallery's size. */
facenet_status facenet_gallery_score_subject(
    facenet_gallery *gallery, const char *model_id, const float *query,
    int dim, const char *collection, const char *subject,
    facenet_gallery_match *match, facenet_error *err);

typedef struct facenet_gallery_subject {
    int64_t id;
    const char *collection;
    const char *name;
    const char *metadata_json; /* NULL when none */
    const char *created_at;    /* UTC, ISO 8601 */
    size_t n_templates;
} facenet_gallery_subject;

typedef struct facenet_gallery_template {
    int64_t id;
    int64_t subject_id;
    const char *model_id;
    const char *preprocess;
    const char *image_sha256; /* "" when unknown */
    const char *created_at;
} facenet_gallery_template;

/* Call `fn` for each subject (of `collection`, or all when NULL), by id.
 * A non-zero return from fn stops the walk. */
facenet_status facenet_gallery_list(
    facenet_gallery *gallery, const char *collection,
    int (*fn)(void *ctx, const facenet_gallery_subject *subject), void *ctx,
    facenet_error *err);
/* Call `fn` for each template of one subject (never its embedding). */
facenet_status facenet_gallery_list_templates(
    facenet_gallery *gallery, const char *collection, const char *subject,
    int (*fn)(void *ctx, const facenet_gallery_template *t), void *ctx,
    facenet_error *err);

/* Collections group subjects: the same name in two collections is two
 * subjects, and a search may be limited to one collection. A collection is
 * created by the first enrollment that names it. */
typedef struct facenet_gallery_collection {
    int64_t id;
    const char *name;
    const char *created_at; /* UTC, ISO 8601 */
    size_t n_subjects;
    size_t n_templates;
} facenet_gallery_collection;

/* Call `fn` for each collection, by id (oldest first), with its counts as
 * stored in the file. The strings are valid only during the callback; a
 * non-zero return from fn stops the walk. */
facenet_status facenet_gallery_list_collections(
    facenet_gallery *gallery,
    int (*fn)(void *ctx, const facenet_gallery_collection *collection),
    void *ctx, facenet_error *err);

/* Rename collection `from` to `to` (both names as for subjects), in one
 * transaction that also re-tags its subjects (their tags cover the
 * collection's name). Errors: FACENET_ERR_NOT_FOUND when there is no
 * `from`; FACENET_ERR_INVALID_ARGUMENT for a bad name, a handle opened
 * read-only, or when `to` already exists; FACENET_ERR_INTEGRITY when one of
 * its subjects fails authentication (a forged row is never re-tagged).
 * Renaming to the same name is a no-op. On any error nothing changes. */
facenet_status facenet_gallery_rename_collection(facenet_gallery *gallery,
                                                 const char *from,
                                                 const char *to,
                                                 facenet_error *err);

/* Delete a collection with all its subjects and templates, in one
 * transaction, then checkpoint the log as facenet_gallery_remove_subject
 * does, so that the bytes are gone from the files. *n_subjects and
 * *n_templates (each may be NULL) receive what was removed.
 * FACENET_ERR_NOT_FOUND when there is no such collection;
 * FACENET_ERR_INVALID_ARGUMENT for a bad name or a read-only handle. */
facenet_status facenet_gallery_remove_collection(facenet_gallery *gallery,
                                                 const char *collection,
                                                 size_t *n_subjects,
                                                 size_t *n_templates,
                                                 facenet_error *err);

typedef struct facenet_gallery_stats {
    int schema_version;
    size_t collections, subjects, templates;
    int64_t file_bytes, wal_bytes; /* sizes on disk                      */
    int64_t page_size, page_count, free_pages;
    size_t memory_bytes;           /* the in-memory matrix and int8 copy */
    float threshold;
    char model_id[FACENET_GALLERY_MODEL_ID_MAX];
    int dim;
} facenet_gallery_stats;

facenet_status facenet_gallery_stats_get(facenet_gallery *gallery,
                                         facenet_gallery_stats *stats,
                                         facenet_error *err);

/* SQLite's integrity_check plus the authentication of every subject and
 * template row; FACENET_ERR_FORMAT or _INTEGRITY naming the first fault. */
facenet_status facenet_gallery_check(facenet_gallery *gallery,
                                     facenet_error *err);

/* Re-seal every template and re-tag every subject under new_key, in one
 * transaction; the old key stops working when this returns FACENET_OK. */
facenet_status facenet_gallery_rekey(facenet_gallery *gallery,
                                     const uint8_t *new_key,
                                     facenet_error *err);

/* Reload the matrix if another connection changed the file since the last
 * load. *changed (may be NULL) is set to 1 when it did. */
facenet_status facenet_gallery_refresh(facenet_gallery *gallery, int *changed,
                                       facenet_error *err);

/* Export every subject and template (with its embedding) as JSON. With
 * export_key NULL the file is plain JSON (biometric data in clear: the
 * caller asked for it); otherwise it is sealed with that 32-byte key. The
 * file is written to a temporary name and renamed, mode 0600. */
facenet_status facenet_gallery_export(facenet_gallery *gallery,
                                      const char *path,
                                      const uint8_t *export_key,
                                      facenet_error *err);
/* Merge an export into this gallery in one transaction: subjects are
 * matched by collection and name, templates already present (same image
 * digest) are skipped. The export's model must be the gallery's. A sealed
 * export needs its key; *n_added (may be NULL) counts the new templates. */
facenet_status facenet_gallery_import(facenet_gallery *gallery,
                                      const char *path,
                                      const uint8_t *import_key,
                                      size_t *n_added, facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Clustering unlabelled faces                                              */
/* ------------------------------------------------------------------------ */

typedef enum facenet_cluster_method {
    FACENET_CLUSTER_CHINESE_WHISPERS = 1, /* graph label propagation, as
                                             dlib's chinese_whispers        */
    FACENET_CLUSTER_DBSCAN = 2            /* density: core points and noise */
} facenet_cluster_method;

typedef struct facenet_cluster_options {
    facenet_cluster_method method; /* default Chinese Whispers            */
    float threshold;  /* two faces are linked when their cosine similarity
                         is >= threshold; required (no default)          */
    int min_samples;  /* DBSCAN: a core point has at least this many
                         linked faces, itself included; default 3        */
    int iterations;   /* Chinese Whispers passes; default 100            */
    uint64_t seed;    /* Chinese Whispers visiting order; default 1      */
} facenet_cluster_options;

void facenet_cluster_options_default(facenet_cluster_options *options);

/* Group n embeddings of `dim` floats. labels[i] receives a cluster number,
 * 0 for the largest cluster, 1 for the next, ...; -1 marks DBSCAN noise.
 * *n_clusters counts the clusters (noise excluded). The same input and
 * options give the same labels. Cost: n^2 / 2 dot products; at most
 * 200,000 embeddings. Thread-safe: no shared state. */
facenet_status facenet_cluster(const float *embeddings, size_t n, int dim,
                               const facenet_cluster_options *options,
                               int *labels, size_t *n_clusters,
                               facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Classifier: a linear SVM with probabilities (facenet's classifier.py)    */
/* ------------------------------------------------------------------------ */
/*
 * Trained with libsvm (C-SVC, linear kernel, C = 1, Platt-scaled
 * probabilities: what scikit-learn's SVC(kernel='linear', probability=True)
 * computes, since it wraps the same libsvm). A library built without
 * libsvm returns FACENET_ERR_UNSUPPORTED from train, load and save.
 *
 * The saved file is plain text: one header line
 *     facenet-classifier 1 sha256 <64 hex>        (or hmac-sha256)
 * then a JSON document with the class names, the embedding model id and the
 * support vectors and coefficients as numbers. The digest covers every byte
 * after the header; with a key it is an HMAC, so that a file changed by
 * someone without the key is refused, not merely a damaged one. Loading
 * checks the digest before parsing, and parsing only reads numbers and
 * names: no code, no pickles.
 *
 * Thread safety: predictions on one classifier may run concurrently.
 * Training uses the C library's rand() (libsvm's cross-validation folds for
 * the probability model); seed it with srand() for repeatable results.
 */

typedef struct facenet_classifier facenet_classifier;

/* labels[i] in 0..n_classes-1 names class_names[labels[i]]; every class
 * needs at least one sample and there must be at least 2 classes. */
facenet_status facenet_classifier_train(const float *embeddings,
                                        const int *labels, size_t n, int dim,
                                        const char *const *class_names,
                                        size_t n_classes, const char *model_id,
                                        facenet_classifier **out,
                                        facenet_error *err);

/* key: NULL for a SHA-256 digest, or FACENET_GALLERY_KEY_BYTES bytes for
 * an HMAC-SHA-256. Written to a temporary name and renamed (mode 0600). */
facenet_status facenet_classifier_save(const facenet_classifier *c,
                                       const char *path, const uint8_t *key,
                                       facenet_error *err);
/* A file with an HMAC needs its key; a wrong key, a changed byte or a
 * truncated file fail with FACENET_ERR_INTEGRITY before any parsing. A key
 * given for an unsigned file is refused too (FACENET_ERR_INTEGRITY): the
 * caller asked for authenticity. */
facenet_status facenet_classifier_load(const char *path, const uint8_t *key,
                                       facenet_classifier **out,
                                       facenet_error *err);
void facenet_classifier_free(facenet_classifier *c);

size_t facenet_classifier_class_count(const facenet_classifier *c);
const char *facenet_classifier_class_name(const facenet_classifier *c,
                                          size_t index);
const char *facenet_classifier_model(const facenet_classifier *c);
int facenet_classifier_dim(const facenet_classifier *c);

/* Class probabilities for one embedding (probabilities must hold
 * class_count doubles; they sum to 1) and the most probable class. The
 * embedding must come from the classifier's model. */
facenet_status facenet_classifier_predict(const facenet_classifier *c,
                                          const char *model_id,
                                          const float *embedding, int dim,
                                          double *probabilities, size_t *best,
                                          facenet_error *err);

#ifdef __cplusplus
}
#endif

#endif /* FACENET_FACENET_H */
