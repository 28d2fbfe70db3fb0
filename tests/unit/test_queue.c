/*
 * Unit tests: queue — the real workers against a real SQLite store and the
 * real local provider and media store, in a temp dir. Covers completion,
 * transient retries, running out of retries, permanent failures, input
 * errors, cancel mid-flight, graceful stop (finish within grace, or hand
 * back), the lease sweep and pending expiry. Short cfg values keep it fast.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "generation.h"
#include "gen_state.h"
#include "ids.h"
#include "log.h"
#include "media.h"
#include "net.h"
#include "provider.h"
#include "queue.h"
#include "store.h"
#include "util.h"

#define PUBLIC_URL "http://127.0.0.1:9"
#define WAIT_MS 60000

static char tmpdir[128];
static store_t *S;
static char user_id[ID_LEN];
static char *product_url;
static char *model_url;
static bool queue_up;

static const char *fixtures_dir(void)
{
    const char *d = getenv("SS_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

static char *upload_fixture(const char *name)
{
    char *path = xasprintf("%s/%s", fixtures_dir(), name);
    buf b = {0};
    cr_assert_eq(util_read_file(path, MEDIA_MAX_BYTES, &b), 0, "cannot read %s", path);
    provider_image info = {0};
    char *url = NULL, *err = NULL;
    int rc = media_save_upload(b.data, b.len, &info, &url, &err);
    cr_assert_eq(rc, 0, "media_save_upload(%s): %s", path, err ? err : "?");
    buf_free(&b);
    free(path);
    return url;
}

static void setup(void)
{
    cr_assert_eq(ids_init(), 0);
    if (!getenv("SS_TEST_LOG")) log_min_level = LOG_ERROR;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ss-queue-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));

    cfg.workers = 2;
    cfg.lease_seconds = 2;
    cfg.retry_base_ms = 10;
    cfg.max_retries = 3;
    cfg.pending_ttl = 1800;
    cfg.test_faults = xstrdup("");
    cfg.data_dir = xstrdup(tmpdir);
    cfg.public_url = xstrdup(PUBLIC_URL);
    cfg.allow_hosts = xstrdup("");

    cr_assert_eq(net_start(""), 0);
    cr_assert_eq(media_init(tmpdir, PUBLIC_URL), 0);
    char *url = xasprintf("sqlite:%s/test.db", tmpdir);
    char *err = NULL;
    cr_assert_eq(store_open(url, &(store_options){.codec = &gen_record_codec}, &S, &err), STORE_OK,
                 "store_open: %s", err ? err : "?");
    free(url);

    user_record u;
    memset(&u, 0, sizeof u);
    ids_new("usr", u.id);
    snprintf(u.email, sizeof u.email, "q-%.30s@example.com", u.id + 4);
    snprintf(u.name, sizeof u.name, "Queue Tester");
    snprintf(u.plan, sizeof u.plan, "free");
    snprintf(u.role, sizeof u.role, "user");
    u.created_at = now_ms();
    cr_assert_eq(store_user_create(S, &u, NULL, 10), STORE_OK);
    memcpy(user_id, u.id, ID_LEN);

    product_url = upload_fixture("product.jpg");
    model_url = upload_fixture("model.jpg");
}

static void teardown(void)
{
    if (queue_up) queue_stop(0);
    queue_up = false;
    store_close(S);
    media_shutdown();
    net_stop();
    free(product_url);
    free(model_url);
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    free(cmd);
}

TestSuite(queue, .init = setup, .fini = teardown, .timeout = 180);

static void start_queue(const char *faults)
{
    free(cfg.test_faults);
    cfg.test_faults = xstrdup(faults);
    cr_assert_eq(queue_start(S), 0);
    queue_up = true;
}

static void stop_queue(int grace_ms)
{
    queue_stop(grace_ms);
    queue_up = false;
}

/* Creates a generation of local-studio (cost 1), started unless !start. */
static void create_gen(const char *product, const char *model, bool start, char id[ID_LEN])
{
    gen_record g;
    memset(&g, 0, sizeof g);
    ids_new("gen", g.id);
    memcpy(g.user_id, user_id, ID_LEN);
    g.product_images = json_pack("[s]", product);
    g.model_images = model ? json_pack("[s]", model) : json_array();
    g.result_images = json_array();
    g.prompt = xstrdup("a product photo on a studio backdrop");
    snprintf(g.params.model, sizeof g.params.model, "local-studio");
    snprintf(g.params.style, sizeof g.params.style, "minimal");
    snprintf(g.params.quality, sizeof g.params.quality, "low");
    snprintf(g.params.aspect_ratio, sizeof g.params.aspect_ratio, "1:1");
    g.params.guidance_scale = 7.5;
    g.params.num_inference_steps = 20;
    g.params.strength = 0.8;
    g.params.seed = 42;
    g.priority = PRIORITY_NORMAL;
    g.tokens_used = 1;
    g.created_at = now_ms();
    cr_assert_eq(store_gen_create(S, &g, start, NULL, NULL, NULL), STORE_OK);
    memcpy(id, g.id, ID_LEN);
    gen_record_free(&g);
    if (start) queue_notify();
}

static void get_gen(const char *id, gen_record *out)
{
    memset(out, 0, sizeof *out);
    cr_assert_eq(store_gen_get(S, id, out), STORE_OK);
}

/* Polls until the generation is terminal and its job has left the queue
 * (so the queue's counters include it); fails the test after WAIT_MS. */
static void wait_terminal(const char *id, gen_record *out)
{
    int64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        get_gen(id, out);
        if (gen_status_terminal(out->status) && queue_running() == 0) return;
        cr_assert_lt(mono_ms(), deadline, "generation %s still %s/%s", id,
                     gen_status_name(out->status), out->stage);
        gen_record_free(out);
        usleep(20 * 1000);
    }
}

/* Polls until the generation is in `stage` with progress >= min_progress. */
static void wait_stage(const char *id, const char *stage, int min_progress)
{
    int64_t deadline = mono_ms() + WAIT_MS;
    for (;;) {
        gen_record g;
        get_gen(id, &g);
        bool ok = strcmp(g.stage, stage) == 0 && g.progress >= min_progress;
        cr_assert(!gen_status_terminal(g.status), "generation %s ended %s waiting for %s", id,
                  gen_status_name(g.status), stage);
        gen_record_free(&g);
        if (ok) return;
        cr_assert_lt(mono_ms(), deadline, "generation %s never reached %s", id, stage);
        usleep(10 * 1000);
    }
}

static int64_t balance(void)
{
    user_record u;
    cr_assert_eq(store_user_get(S, user_id, &u), STORE_OK);
    return u.token_balance;
}

static void assert_results(const gen_record *g)
{
    const model_info *m = provider_model_find("local-studio");
    cr_assert_not_null(m);
    cr_assert_eq(json_array_size(g->result_images), (size_t)m->outputs);
    for (size_t i = 0; i < json_array_size(g->result_images); i++) {
        const char *url = json_string_value(json_array_get(g->result_images, i));
        cr_assert_not_null(url);
        cr_assert(str_has_prefix(url, PUBLIC_URL "/media/r/"), "result url %s", url);
        provider_image img = {0};
        char *err = NULL;
        cr_assert_eq(media_fetch(url, NULL, &img, &err), 0, "result %s: %s", url, err ? err : "?");
        cr_assert_gt(img.width, 0);
        cr_assert_gt(img.height, 0);
        provider_image_free(&img);
    }
}

Test(queue, started_generation_completes_with_results)
{
    start_queue("");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_COMPLETED, "status %s error %s", gen_status_name(g.status),
                 g.error ? g.error : "-");
    cr_assert_eq(g.progress, 100);
    cr_assert_eq(g.retry_count, 0);
    cr_assert_eq(g.tokens_used, 1);
    cr_assert_gt(g.completed_at, 0);
    assert_results(&g);
    gen_record_free(&g);
    cr_assert_eq(balance(), 9);

    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.claimed, 1);
    cr_assert_eq(qs.completed, 1);
    cr_assert_eq(qs.failed, 0);
    cr_assert_eq(qs.running, 0);
    cr_assert_eq(queue_running(), 0);
}

Test(queue, model_image_and_concurrent_jobs_complete)
{
    start_queue("");
    char ids[4][ID_LEN];
    create_gen(product_url, model_url, true, ids[0]);
    for (int i = 1; i < 4; i++)
        create_gen(product_url, NULL, true, ids[i]);
    for (int i = 0; i < 4; i++) {
        gen_record g;
        wait_terminal(ids[i], &g);
        cr_assert_eq(g.status, GEN_COMPLETED, "%d: %s", i, g.error ? g.error : "-");
        assert_results(&g);
        gen_record_free(&g);
    }
    cr_assert_eq(balance(), 6);
    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.completed, 4);
}

Test(queue, transient_fault_retries_then_completes)
{
    start_queue("transient=1, no-such-fault");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_COMPLETED, "error %s", g.error ? g.error : "-");
    cr_assert_eq(g.retry_count, 1);
    assert_results(&g);
    gen_record_free(&g);
    cr_assert_eq(balance(), 9);
    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.retried, 1);
    cr_assert_eq(qs.completed, 1);
    cr_assert_eq(qs.claimed, 2);
}

Test(queue, transient_fault_out_of_retries_fails_and_refunds)
{
    cfg.max_retries = 2;
    start_queue("transient=99");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    cr_assert_eq(balance(), 9);
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert_eq(g.retry_count, 2);
    cr_assert_eq(g.tokens_used, 0);
    cr_assert_not_null(g.error);
    cr_assert(strstr(g.error, "provider unavailable (injected fault)"), "error %s", g.error);
    cr_assert_eq(json_array_size(g.result_images), 0);
    gen_record_free(&g);
    cr_assert_eq(balance(), 10);
    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.retried, 2);
    cr_assert_eq(qs.failed, 1);
}

Test(queue, permanent_fault_fails_at_once_and_refunds)
{
    start_queue("permanent");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert_eq(g.retry_count, 0);
    cr_assert_eq(g.tokens_used, 0);
    cr_assert(g.error && strstr(g.error, "provider rejected the request (injected fault)"),
              "error %s", g.error ? g.error : "-");
    gen_record_free(&g);
    cr_assert_eq(balance(), 10);
    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.retried, 0);
    cr_assert_eq(qs.failed, 1);
    cr_assert_eq(qs.claimed, 1);
}

Test(queue, unreadable_input_image_fails_with_its_index)
{
    cfg.max_retries = 1;
    start_queue("");
    char *missing = xasprintf("%s/media/u/%s.jpg", PUBLIC_URL, "ABCDEFGHJKMNPQRSTVWXYZ0123456789");
    char id[ID_LEN];
    create_gen(missing, NULL, true, id);
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_FAILED);
    cr_assert(g.error && str_has_prefix(g.error, "product image 1: "), "error %s",
              g.error ? g.error : "-");
    cr_assert_eq(g.tokens_used, 0);
    gen_record_free(&g);
    free(missing);
    cr_assert_eq(balance(), 10);
}

Test(queue, cancel_mid_flight_stops_the_provider)
{
    start_queue("delay_ms=10000");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    /* Progress rises while the (delayed) provider call runs. */
    wait_stage(id, STAGE_GENERATING, 20);
    cr_assert_eq(queue_running(), 1);

    cr_assert_eq(gen_state_cancel(S, id, "cancelled by user", now_ms()), STORE_OK);
    int64_t t0 = mono_ms();
    queue_cancel(id);
    while (queue_running() > 0) {
        cr_assert_lt(mono_ms() - t0, 2000, "job still running after cancel");
        usleep(5 * 1000);
    }
    gen_record g;
    get_gen(id, &g);
    cr_assert_eq(g.status, GEN_CANCELLED);
    cr_assert_eq(g.tokens_used, 0);
    cr_assert_eq(json_array_size(g.result_images), 0);
    gen_record_free(&g);
    cr_assert_eq(balance(), 10);
    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.cancelled, 1);
    cr_assert_eq(qs.completed, 0);
    cr_assert_eq(qs.failed, 0);

    /* Nothing overwrites the cancel later. */
    usleep(300 * 1000);
    get_gen(id, &g);
    cr_assert_eq(g.status, GEN_CANCELLED);
    gen_record_free(&g);
}

Test(queue, cancel_without_queue_cancel_is_noticed_through_the_store)
{
    /* Another process cancelled it: the next progress write or lease
     * renewal conflicts and the job stops. */
    start_queue("delay_ms=10000");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    wait_stage(id, STAGE_GENERATING, 16);
    cr_assert_eq(gen_state_cancel(S, id, "cancelled by user", now_ms()), STORE_OK);
    int64_t t0 = mono_ms();
    while (queue_running() > 0) {
        cr_assert_lt(mono_ms() - t0, 3000, "job still running after cancel");
        usleep(10 * 1000);
    }
    gen_record g;
    get_gen(id, &g);
    cr_assert_eq(g.status, GEN_CANCELLED);
    gen_record_free(&g);
    cr_assert_eq(balance(), 10);
}

Test(queue, stop_hands_back_a_running_job)
{
    start_queue("delay_ms=10000");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    wait_stage(id, STAGE_GENERATING, 16);

    int64_t t0 = mono_ms();
    stop_queue(200);
    cr_assert_lt(mono_ms() - t0, 3000, "queue_stop took too long");
    cr_assert_eq(queue_running(), 0);

    gen_record g;
    get_gen(id, &g);
    cr_assert_eq(g.status, GEN_PROCESSING);
    cr_assert_str_eq(g.stage, STAGE_QUEUED);
    cr_assert_eq(g.retry_count, 0);
    cr_assert_eq(g.tokens_used, 1);
    gen_record_free(&g);
    cr_assert_eq(balance(), 9);
    struct queue_stats qs;
    queue_stats(&qs);
    cr_assert_eq(qs.handed_back, 1);

    /* A new queue picks it up again, without a retry counted. */
    start_queue("");
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_COMPLETED, "error %s", g.error ? g.error : "-");
    cr_assert_eq(g.retry_count, 0);
    gen_record_free(&g);
}

Test(queue, stop_lets_a_job_finish_within_grace)
{
    start_queue("delay_ms=300");
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    wait_stage(id, STAGE_GENERATING, 16);
    stop_queue(30000);
    gen_record g;
    get_gen(id, &g);
    cr_assert_eq(g.status, GEN_COMPLETED, "status %s/%s", gen_status_name(g.status), g.stage);
    gen_record_free(&g);
}

Test(queue, sweep_requeues_an_expired_lease)
{
    char id[ID_LEN];
    create_gen(product_url, NULL, true, id);
    /* A worker of a "crashed" process claims it and never renews. */
    gen_record claimed;
    memset(&claimed, 0, sizeof claimed);
    cr_assert_eq(store_gen_claim(S, "crashed-host:1:w0", now_ms(), 100, &claimed), STORE_OK);
    cr_assert_str_eq(claimed.id, id);
    gen_record_free(&claimed);
    usleep(150 * 1000);

    start_queue("");
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_COMPLETED, "error %s", g.error ? g.error : "-");
    cr_assert_eq(g.retry_count, 1);
    gen_record_free(&g);
    cr_assert_eq(balance(), 9);
}

Test(queue, sweep_expires_stale_pending_with_refund)
{
    cfg.pending_ttl = 1;
    char id[ID_LEN];
    create_gen(product_url, NULL, false, id);
    cr_assert_eq(balance(), 9);
    util_clock_shift_ms(5000);
    start_queue("");
    gen_record g;
    wait_terminal(id, &g);
    cr_assert_eq(g.status, GEN_CANCELLED);
    cr_assert(g.error && strstr(g.error, "expired"), "error %s", g.error ? g.error : "-");
    cr_assert_eq(g.tokens_used, 0);
    gen_record_free(&g);
    cr_assert_eq(balance(), 10);
}
