// dlib_peer.cpp - dlib's own ResNet, the engine under face_recognition, as
// the baseline for `make bench`.
//
// Loads dlib_face_recognition_resnet_model_v1.dat with dlib's own
// deserialiser and times net(chips) on BATCH 150x150 chips, the same
// deterministic chips `facenet bench` feeds our backends. Built against
// Debian's libdlib-dev with -O3 -march=native; dlib's convolutions run in
// libdlib itself and in whatever BLAS libblas.so.3 resolves to, which the
// output line names. THREADS pins the process to that many CPUs, which is
// the only thread control dlib's CPU code has (its pool is sized to the
// CPUs the process may use).
//
// Built only by the `bench` target; never part of the library.
//
// usage: dlib_peer MODEL.dat BATCH THREADS RUNS
// prints: dlib+<blas> <batch> <threads> <median_ms> <best_ms> <max|v|>
// where <blas> is "openblas" when libblas.so.3 resolved to OpenBLAS, else
// "reference-blas" (Debian's default netlib BLAS).

#include <dlib/dnn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <sched.h>
#include <vector>

namespace peer {

using namespace dlib;

// The network stored in the .dat file, layer for layer: a 7x7/2 stem,
// then residual stages of 32, 64, 128 and 256 filters, where every stage
// but the first opens with a strided block whose shortcut is a 2x2 average
// pool. The type must match the file exactly or deserialisation fails.
template <int filters, int stride, typename INPUT>
using conv_pair = affine<con<filters, 3, 3, 1, 1, relu<affine<con<filters, 3, 3, stride, stride, INPUT>>>>>;

template <int filters, typename INPUT>
using same_block = relu<add_prev1<conv_pair<filters, 1, tag1<INPUT>>>>;

template <int filters, typename INPUT>
using down_block = relu<add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<conv_pair<filters, 2, tag1<INPUT>>>>>>>;

template <typename INPUT> using stage32 = same_block<32, same_block<32, same_block<32, INPUT>>>;
template <typename INPUT>
using stage64 = same_block<64, same_block<64, same_block<64, down_block<64, INPUT>>>>;
template <typename INPUT> using stage128 = same_block<128, same_block<128, down_block<128, INPUT>>>;
template <typename INPUT> using stage256 = same_block<256, same_block<256, down_block<256, INPUT>>>;
template <typename INPUT> using stage_out = down_block<256, INPUT>;

using stem = max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>;

using face_net = loss_metric<fc_no_bias<128, avg_pool_everything<
    stage_out<stage256<stage128<stage64<stage32<stem>>>>>>>>;

}  // namespace peer

// When libblas.so.3 is OpenBLAS (LD_LIBRARY_PATH or the Debian
// alternative), it sized its own pool when it was loaded: cap it too.
static const char *limit_blas_threads(int threads)
{
    typedef void (*set_threads_fn)(int);
    void *sym = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (!sym)
        return "reference-blas";
    set_threads_fn set_threads;
    std::memcpy(&set_threads, &sym, sizeof set_threads);
    set_threads(threads);
    return "openblas";
}

static void pin_to_cpus(int threads)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < threads; i++)
        CPU_SET(i, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        std::perror("dlib_peer: sched_setaffinity");
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        std::fprintf(stderr, "usage: dlib_peer MODEL.dat BATCH THREADS RUNS\n");
        return 1;
    }
    const int batch = std::atoi(argv[2]), threads = std::atoi(argv[3]), runs = std::atoi(argv[4]);
    if (batch < 1 || threads < 1 || runs < 1) {
        std::fprintf(stderr, "dlib_peer: bad arguments\n");
        return 1;
    }
    pin_to_cpus(threads);
    const char *blas = limit_blas_threads(threads);

    peer::face_net net;
    try {
        dlib::deserialize(argv[1]) >> net;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "dlib_peer: %s\n", e.what());
        return 1;
    }

    // Chip b: the bench pattern, as 8-bit RGB (dlib subtracts its mean and
    // divides by 256 itself).
    std::vector<dlib::matrix<dlib::rgb_pixel>> chips(batch);
    for (int b = 0; b < batch; b++) {
        chips[b].set_size(150, 150);
        for (long y = 0; y < 150; y++)
            for (long x = 0; x < 150; x++) {
                const long i = ((long)b * 150 * 150 + y * 150 + x) * 3;
                chips[b](y, x) = dlib::rgb_pixel((unsigned char)((i * 7919) % 256),
                                                 (unsigned char)(((i + 1) * 7919) % 256),
                                                 (unsigned char)(((i + 2) * 7919) % 256));
            }
    }

    std::vector<double> times;
    float peak = 0.0f;
    for (int r = -1; r < runs; r++) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<dlib::matrix<float, 0, 1>> out = net(chips, (size_t)batch);
        const auto t1 = std::chrono::steady_clock::now();
        if (r >= 0)
            times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        for (const auto &v : out)
            for (long i = 0; i < v.size(); i++)
                peak = std::max(peak, std::fabs(v(i)));
    }
    std::sort(times.begin(), times.end());
    std::printf("dlib+%s %d %d %.3f %.3f %.6g\n", blas, batch, threads, times[times.size() / 2],
                times[0], (double)peak);
    return 0;
}
