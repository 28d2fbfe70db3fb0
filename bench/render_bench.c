/*
 * render_bench — times local-studio renders, and writes sample renders.
 *
 *   render_bench [options] PRODUCT... [--model MODEL_IMAGE]...
 *     --style realistic|artistic|minimal   (realistic)
 *     --aspect 1:1|16:9|...                (1:1)
 *     --quality auto|high|...              (auto)
 *     --seed N                             (42)
 *     --variant N                          (0)
 *     --prompt TEXT   the custom prompt (none)
 *     --background auto|transparent|opaque   (auto)
 *     --format jpeg|png|webp                 (jpeg; png when transparent)
 *     --runs N        renders to time; prints the median (7)
 *     --out FILE      also write the (last) render there
 *
 * `make bench` runs it on the fixtures at 1:1 for low (1024×1024), auto
 * (1600×1600) and high (2048×2048) quality and prints the medians, wall
 * and CPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "provider.h"
#include "util.h"

static int load(const char *path, provider_image *img)
{
    buf b = {0};
    if (util_read_file(path, 64 * 1024 * 1024, &b)) {
        fprintf(stderr, "render_bench: cannot read %s\n", path);
        return -1;
    }
    memset(img, 0, sizeof *img);
    img->data = (unsigned char *)b.data;
    img->len = b.len;
    return 0;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    gen_params p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "local-studio");
    snprintf(p.style, sizeof p.style, "realistic");
    snprintf(p.quality, sizeof p.quality, "auto");
    snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "1:1");
    p.seed = 42;
    int runs = 7, variant = 0;
    const char *out_path = NULL, *prompt = NULL;
    provider_image prods[5], models[3];
    size_t np = 0, nm = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (str_eq(a, "--style") && v)
            snprintf(p.style, sizeof p.style, "%s", argv[++i]);
        else if (str_eq(a, "--aspect") && v)
            snprintf(p.aspect_ratio, sizeof p.aspect_ratio, "%s", argv[++i]);
        else if (str_eq(a, "--quality") && v)
            snprintf(p.quality, sizeof p.quality, "%s", argv[++i]);
        else if (str_eq(a, "--seed") && v)
            p.seed = atoll(argv[++i]);
        else if (str_eq(a, "--variant") && v)
            variant = atoi(argv[++i]);
        else if (str_eq(a, "--runs") && v)
            runs = atoi(argv[++i]);
        else if (str_eq(a, "--prompt") && v)
            prompt = argv[++i];
        else if (str_eq(a, "--background") && v)
            snprintf(p.background, sizeof p.background, "%s", argv[++i]);
        else if (str_eq(a, "--format") && v)
            snprintf(p.output_format, sizeof p.output_format, "%s", argv[++i]);
        else if (str_eq(a, "--out") && v)
            out_path = argv[++i];
        else if (str_eq(a, "--model") && v) {
            if (nm == 3 || load(argv[++i], &models[nm++])) return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "render_bench: unknown option %s\n", a);
            return 2;
        } else if (np == 5 || load(a, &prods[np++]))
            return 2;
    }
    if (!np) {
        fprintf(stderr, "usage: render_bench [options] PRODUCT... [--model IMAGE]\n");
        return 2;
    }
    if (runs < 1) runs = 1;
    long long *ms = calloc((size_t)runs, sizeof *ms), *cpu = calloc((size_t)runs, sizeof *cpu);
    provider_image out = {0};
    for (int r = 0; r < runs; r++) {
        provider_image_free(&out);
        char *err = NULL;
        struct timespec t0, t1, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        int rc = provider_local_render(&p, prompt, prods, np, models, nm, variant, NULL, NULL, NULL,
                                       &out, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        if (rc != PROVIDER_OK) {
            fprintf(stderr, "render_bench: render failed: %s\n", err ? err : "?");
            return 1;
        }
        ms[r] = (t1.tv_sec - t0.tv_sec) * 1000000LL + (t1.tv_nsec - t0.tv_nsec) / 1000;
        cpu[r] = (c1.tv_sec - c0.tv_sec) * 1000000LL + (c1.tv_nsec - c0.tv_nsec) / 1000;
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp_ll);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp_ll);
    /* CPU time (all threads of the process) is the figure to read on a
     * shared machine; wall time includes waiting for a core. */
    printf("local-studio %s %s %s %dx%d: median %.1f ms wall, %.1f ms CPU over %d renders "
           "(wall min %.1f, max %.1f), %zu bytes %s\n",
           p.style, p.aspect_ratio, p.quality, out.width, out.height, ms[runs / 2] / 1000.0,
           cpu[runs / 2] / 1000.0, runs, ms[0] / 1000.0, ms[runs - 1] / 1000.0, out.len,
           out.format);
    if (out_path && util_write_file_atomic(out_path, out.data, out.len, true)) {
        fprintf(stderr, "render_bench: cannot write %s\n", out_path);
        return 1;
    }
    provider_image_free(&out);
    free(ms);
    free(cpu);
    for (size_t i = 0; i < np; i++)
        free(prods[i].data);
    for (size_t i = 0; i < nm; i++)
        free(models[i].data);
    return 0;
}
