/*
 * provider_bench — the `bench-instant` model, for benchmarks only: it
 * returns one small valid JPEG at once, so bench/ can measure the
 * generation lifecycle (store, queue, events) without image work. It
 * exists only with `--enable-bench-model`; without it the model is unknown
 * (MODEL_ERROR), and it is never listed by GET /api/models.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "log.h"
#include "provider.h"
#include "util.h"

#define SIDE 64

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void *jpeg;
static size_t jpeg_len;

/* A flat grey SIDE×SIDE JPEG, encoded once. */
static void encode_once(void)
{
    VipsImage *img = NULL;
    if (vips_black(&img, SIDE, SIDE, "bands", 3, NULL) == 0) {
        VipsImage *grey = NULL;
        if (vips_linear1(img, &grey, 1.0, 200.0, NULL) == 0) {
            if (vips_jpegsave_buffer(grey, &jpeg, &jpeg_len, "Q", 80, NULL) != 0) jpeg = NULL;
            g_object_unref(grey);
        }
        g_object_unref(img);
    }
    if (!jpeg) log_error("bench-instant: cannot encode its image: %s", vips_error_buffer());
}

static int bench_start(provider_job *job)
{
    pthread_once(&once, encode_once);
    if (!jpeg) return -1;
    int n = job->model->outputs > 0 ? job->model->outputs : 1;
    provider_image *out = xcalloc((size_t)n, sizeof *out);
    for (int i = 0; i < n; i++) {
        out[i].data = xmalloc(jpeg_len);
        memcpy(out[i].data, jpeg, jpeg_len);
        out[i].len = jpeg_len;
        strcpy(out[i].format, "jpeg");
        out[i].width = out[i].height = SIDE;
    }
    job->on_done(job, PROVIDER_OK, out, (size_t)n, NULL);
    return 0;
}

static void bench_cancel(provider_job *job)
{
    (void)job; /* finishes before a cancel could matter */
}

const provider_ops provider_bench_ops = {
    .name = "bench",
    .start = bench_start,
    .cancel = bench_cancel,
};
