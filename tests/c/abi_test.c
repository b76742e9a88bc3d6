/*
 * The C ABI from C: every function in include/ringfence.h, with NULL for every pointer
 * parameter, too-small buffers, bad arguments, stale handles, the panic boundary, and
 * whole calls through the engine in virtual time (the host's clock is a plain counter
 * here). Everything it creates it frees: tests/c_abi.rs runs it under AddressSanitizer,
 * UBSan and LeakSanitizer (or valgrind).
 *
 *   cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/abi_test.c \
 *      target/debug/libringfence.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o abi_test
 *
 * A failed check prints file:line and the expression and exits 1. On success the last
 * line is "abi_test: N passed, 0 failed".
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringfence.h"

/* ----- checks ---------------------------------------------------------------------- */

static unsigned long g_checks = 0;

static const char *status_name(ringfence_status st) {
    static const char *names[] = {
        "RINGFENCE_OK",           "RINGFENCE_DONE",          "RINGFENCE_NULL_ARGUMENT",
        "RINGFENCE_BUFFER_TOO_SMALL", "RINGFENCE_INVALID_CONFIG", "RINGFENCE_UNKNOWN_CALL",
        "RINGFENCE_NOT_ROUTING",  "RINGFENCE_INVALID_ARGUMENT", "RINGFENCE_PANIC",
    };
    return st < sizeof names / sizeof names[0] ? names[st] : "(not a ringfence_status)";
}

static _Noreturn void fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: CHECK failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fprintf(stderr, "abi_test: %lu passed, 1 failed\n", g_checks);
    exit(1);
}

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fail(__FILE__, __LINE__, "%s", #cond);                                          \
        }                                                                                   \
        g_checks++;                                                                         \
    } while (0)

/* A call that must return `want` (a ringfence_status). */
#define CHECK_ST(expr, want)                                                                \
    do {                                                                                    \
        ringfence_status got_ = (expr);                                                     \
        if (got_ != (want)) {                                                               \
            fail(__FILE__, __LINE__, "%s returned %s (%u), want %s", #expr,                 \
                 status_name(got_), (unsigned)got_, #want);                                 \
        }                                                                                   \
        g_checks++;                                                                         \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                    \
    do {                                                                                    \
        const char *h_ = (haystack);                                                        \
        if (h_ == NULL || strstr(h_, (needle)) == NULL) {                                   \
            fail(__FILE__, __LINE__, "%s does not contain \"%s\": \"%s\"", #haystack,       \
                 (needle), h_ != NULL ? h_ : "(null)");                                     \
        }                                                                                   \
        g_checks++;                                                                         \
    } while (0)

/* ----- addresses and time -------------------------------------------------------- */

static ringfence_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
    ringfence_addr r;
    memset(&r, 0, sizeof r);
    r.family = 4;
    r.port = port;
    r.ip[0] = a;
    r.ip[1] = b;
    r.ip[2] = c;
    r.ip[3] = d;
    return r;
}

static bool addr_eq(const ringfence_addr *x, const ringfence_addr *y) {
    size_t n = x->family == 4 ? 4 : 16;
    return x->family == y->family && x->port == y->port && memcmp(x->ip, y->ip, n) == 0;
}

#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)
/* Virtual time starts here; the engine must not care what the origin is. */
#define T0 (UINT64_C(5000) * NS_PER_S)

/* The engine's own address, a carrier, two destinations (as in the Rust tests). */
static ringfence_addr NODE, CARRIER, DEST, DEST2;

static void init_addresses(void) {
    NODE = v4(192, 0, 2, 10, 5060);
    CARRIER = v4(192, 0, 2, 1, 5060);
    DEST = v4(192, 0, 2, 20, 5080);
    DEST2 = v4(192, 0, 2, 21, 5080);
}

/* ----- what the engine sends ----------------------------------------------------- */

#define SENT_CAP 4096
#define MAX_SENT 32

typedef struct {
    char bytes[SENT_CAP + 1]; /* NUL-terminated copy */
    size_t len;
    ringfence_addr dest, src;
} sent_t;

typedef struct {
    sent_t items[MAX_SENT];
    size_t n;
} sent_list;

/* Takes every queued datagram into `out` (appending). */
static void collect_into(ringfence_engine *e, sent_list *out) {
    for (;;) {
        CHECK(out->n < MAX_SENT);
        sent_t *s = &out->items[out->n];
        ringfence_status st = ringfence_engine_send(e, (uint8_t *)s->bytes, SENT_CAP, &s->len,
                                                    &s->dest, &s->src);
        if (st == RINGFENCE_DONE) {
            return;
        }
        CHECK_ST(st, RINGFENCE_OK);
        CHECK(s->len <= SENT_CAP);
        s->bytes[s->len] = '\0';
        out->n++;
    }
}

static sent_list *collect(ringfence_engine *e, sent_list *out) {
    out->n = 0;
    collect_into(e, out);
    return out;
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* How many datagrams in `l` went to `to` and begin with `prefix`. */
static size_t count_to(const sent_list *l, const ringfence_addr *to, const char *prefix) {
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (addr_eq(&l->items[i].dest, to) && starts_with(l->items[i].bytes, prefix)) {
            n++;
        }
    }
    return n;
}

/* The only datagram in `l` to `to` that begins with `prefix` (a failed check if there
 * is not exactly one). */
static const sent_t *one_to_at(const sent_list *l, const ringfence_addr *to, const char *prefix,
                               int line) {
    const sent_t *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (addr_eq(&l->items[i].dest, to) && starts_with(l->items[i].bytes, prefix)) {
            found = &l->items[i];
            n++;
        }
    }
    if (n != 1) {
        fprintf(stderr, "--- %zu datagram(s) sent:\n", l->n);
        for (size_t i = 0; i < l->n; i++) {
            fprintf(stderr, "[to port %u] %.*s\n", (unsigned)l->items[i].dest.port,
                    (int)strcspn(l->items[i].bytes, "\r"), l->items[i].bytes);
        }
        fail(__FILE__, line, "expected one datagram to port %u starting \"%s\", got %zu",
             (unsigned)to->port, prefix, n);
    }
    g_checks++;
    return found;
}
#define ONE_TO(l, to, prefix) one_to_at((l), &(to), (prefix), __LINE__)

static bool name_is(const char *line, size_t name_len, const char *want) {
    if (strlen(want) != name_len) {
        return false;
    }
    for (size_t i = 0; i < name_len; i++) {
        char a = line[i], b = want[i];
        if (a >= 'A' && a <= 'Z') {
            a = (char)(a - 'A' + 'a');
        }
        if (b >= 'A' && b <= 'Z') {
            b = (char)(b - 'A' + 'a');
        }
        if (a != b) {
            return false;
        }
    }
    return true;
}

/* How many header lines of `msg` are named `name` (or its compact form). */
static size_t header_count(const char *msg, const char *name, const char *compact) {
    size_t n = 0;
    const char *line = strstr(msg, "\r\n");
    while (line != NULL) {
        line += 2;
        if (starts_with(line, "\r\n")) {
            break;
        }
        size_t name_len = strcspn(line, ":\r\n");
        while (name_len > 0 && line[name_len - 1] == ' ') {
            name_len--;
        }
        if (name_is(line, name_len, name) || (compact != NULL && name_is(line, name_len, compact))) {
            n++;
        }
        line = strstr(line, "\r\n");
    }
    return n;
}

/* ----- messages the peers send ----------------------------------------------------- */

#define MSG_CAP 2048

static const char SDP[] = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                          "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/* A request from the carrier: `tag` names the Call-ID, `branch` the Via branch. */
static size_t request_from(char *buf, const char *caller, const char *method, const char *uri,
                           const char *tag, const char *branch, unsigned cseq,
                           const char *to_tag, bool route, const char *body) {
    int n = snprintf(buf, MSG_CAP,
                     "%s %s SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK%s\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:%s@carrier.example>;tag=ft-%s\r\n"
                     "To: <sip:+18005550199@192.0.2.10>%s%s\r\n"
                     "Call-ID: call-%s@carrier.example\r\n"
                     "CSeq: %u %s\r\n"
                     "%s"
                     "Contact: <sip:+14155550123@192.0.2.1:5060>\r\n"
                     "%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, uri, branch, caller, tag, to_tag != NULL ? ";tag=" : "",
                     to_tag != NULL ? to_tag : "", tag, cseq, method,
                     route ? "Route: <sip:192.0.2.10:5060;lr>\r\n" : "",
                     body[0] != '\0' ? "Content-Type: application/sdp\r\n" : "", strlen(body),
                     body);
    CHECK(n > 0 && n < MSG_CAP);
    return (size_t)n;
}

/* The default caller; a different one is a different call (the same caller dialling the
 * same number again is a carrier re-attempt that supersedes the first attempt). */
#define CALLER "+14155550123"

static size_t request(char *buf, const char *method, const char *uri, const char *tag,
                      const char *branch, unsigned cseq, const char *to_tag, bool route,
                      const char *body) {
    return request_from(buf, CALLER, method, uri, tag, branch, cseq, to_tag, route, body);
}

static size_t invite_from(char *buf, const char *caller, const char *tag) {
    return request_from(buf, caller, "INVITE", "sip:+18005550199@192.0.2.10", tag, tag, 1, NULL,
                        false, SDP);
}

static size_t invite(char *buf, const char *tag) {
    return invite_from(buf, CALLER, tag);
}

static size_t options(char *buf, const char *tag) {
    return request(buf, "OPTIONS", "sip:192.0.2.10", tag, tag, 1, NULL, false, "");
}

/* A response to a request the engine sent, as a UAS builds it: Via, From, To (plus
 * `to_tag` when it has none), Call-ID, CSeq and Record-Route copied. */
static size_t response_to(char *buf, const sent_t *req, unsigned status, const char *reason,
                          const char *to_tag) {
    size_t n = 0;
    int w = snprintf(buf, MSG_CAP, "SIP/2.0 %u %s\r\n", status, reason);
    CHECK(w > 0);
    n = (size_t)w;
    const char *line = strstr(req->bytes, "\r\n");
    while (line != NULL) {
        line += 2;
        if (starts_with(line, "\r\n")) {
            break;
        }
        size_t len = (size_t)(strstr(line, "\r\n") - line);
        size_t name_len = strcspn(line, ":");
        while (name_len > 0 && line[name_len - 1] == ' ') {
            name_len--;
        }
        bool is_to = name_is(line, name_len, "To") || name_is(line, name_len, "t");
        bool copy = is_to || name_is(line, name_len, "Via") || name_is(line, name_len, "v") ||
                    name_is(line, name_len, "From") || name_is(line, name_len, "f") ||
                    name_is(line, name_len, "Call-ID") || name_is(line, name_len, "i") ||
                    name_is(line, name_len, "CSeq") || name_is(line, name_len, "Record-Route");
        if (copy) {
            CHECK(n + len + 32 < MSG_CAP);
            memcpy(buf + n, line, len);
            n += len;
            if (is_to && to_tag != NULL && strstr(line, ";tag=") == NULL) {
                n += (size_t)snprintf(buf + n, MSG_CAP - n, ";tag=%s", to_tag);
            }
            memcpy(buf + n, "\r\n", 2);
            n += 2;
        }
        line = strstr(line, "\r\n");
    }
    w = snprintf(buf + n, MSG_CAP - n,
                 "Contact: <sip:callee@192.0.2.20:5080>\r\nContent-Length: 0\r\n\r\n");
    CHECK(w > 0 && n + (size_t)w < MSG_CAP);
    return n + (size_t)w;
}

static void feed(ringfence_engine *e, uint64_t now, const ringfence_addr *from, const char *msg,
                 size_t len) {
    CHECK_ST(ringfence_engine_recv(e, now, from, &NODE, (const uint8_t *)msg, len), RINGFENCE_OK);
}

/* ----- events ---------------------------------------------------------------------- */

#define MAX_EVENTS 64

typedef struct {
    ringfence_event items[MAX_EVENTS];
    size_t n;
} event_list;

static event_list *events(ringfence_engine *e, event_list *out) {
    out->n = 0;
    for (;;) {
        CHECK(out->n < MAX_EVENTS);
        ringfence_event *ev = &out->items[out->n];
        memset(ev, 0xA5, sizeof *ev); /* the engine must write every field it promises */
        ringfence_status st = ringfence_engine_poll_event(e, ev);
        if (st == RINGFENCE_DONE) {
            return out;
        }
        CHECK_ST(st, RINGFENCE_OK);
        CHECK(ev->kind >= RINGFENCE_EVENT_ROUTE_REQUEST && ev->kind <= RINGFENCE_EVENT_HEALTH_CHANGED);
        CHECK(memchr(ev->dialled, '\0', sizeof ev->dialled) != NULL);
        CHECK(memchr(ev->caller, '\0', sizeof ev->caller) != NULL);
        /* Call handles are never 0; 0 means "not about a call". */
        bool about_call = ev->kind == RINGFENCE_EVENT_ROUTE_REQUEST ||
                          ev->kind == RINGFENCE_EVENT_CALL_STARTED ||
                          ev->kind == RINGFENCE_EVENT_CALL_ANSWERED ||
                          ev->kind == RINGFENCE_EVENT_CALL_ENDED;
        CHECK(about_call ? ev->call != 0 : ev->call == 0);
        /* Every field written: end_reason only for CALL_ENDED, else RINGFENCE_END_NONE. */
        if (ev->kind == RINGFENCE_EVENT_CALL_ENDED) {
            CHECK(ev->end_reason >= RINGFENCE_END_REJECTED &&
                  ev->end_reason <= RINGFENCE_END_SUPERSEDED);
            CHECK((ev->end_reason == RINGFENCE_END_REJECTED) == (ev->status != 0));
        } else {
            CHECK(ev->end_reason == RINGFENCE_END_NONE && ev->status == 0);
        }
        out->n++;
    }
}

static size_t count_kind(const event_list *l, ringfence_event_kind kind) {
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        n += l->items[i].kind == kind;
    }
    return n;
}

static const ringfence_event *find_kind(const event_list *l, ringfence_event_kind kind) {
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].kind == kind) {
            return &l->items[i];
        }
    }
    return NULL;
}

static ringfence_stats stats_of(const ringfence_engine *e) {
    ringfence_stats s;
    memset(&s, 0xA5, sizeof s);
    s.struct_size = sizeof s;
    CHECK_ST(ringfence_engine_stats(e, &s), RINGFENCE_OK);
    CHECK(s.struct_size == sizeof s); /* this library knows exactly this header's struct */
    return s;
}

/* An engine from `cfg` at T0; `cfg` is freed. */
static ringfence_engine *engine_from(ringfence_config *cfg) {
    ringfence_engine *e = NULL;
    char err[256] = "";
    ringfence_status st = ringfence_engine_new(cfg, T0, &e, err, sizeof err);
    if (st != RINGFENCE_OK) {
        fprintf(stderr, "engine_new: %s\n", err);
    }
    CHECK_ST(st, RINGFENCE_OK);
    CHECK(e != NULL);
    ringfence_config_free(cfg);
    return e;
}

static ringfence_config *routed_config(const char *target) {
    ringfence_config *cfg = NULL;
    CHECK_ST(ringfence_config_new(&cfg), RINGFENCE_OK);
    CHECK(cfg != NULL);
    CHECK_ST(ringfence_config_set_seed(cfg, 42), RINGFENCE_OK);
    CHECK_ST(ringfence_config_add_default_target(cfg, target), RINGFENCE_OK);
    return cfg;
}

/* Fires every timer due up to `until`, jumping from deadline to deadline; returns how
 * many datagrams went out meanwhile. */
static size_t run_timers(ringfence_engine *e, uint64_t *now, uint64_t until, sent_list *scratch) {
    size_t sent = 0;
    event_list ev;
    for (int i = 0; i < 100000; i++) {
        uint64_t deadline = 0;
        ringfence_status st = ringfence_engine_timeout_ns(e, &deadline);
        if (st == RINGFENCE_DONE || (st == RINGFENCE_OK && deadline > until)) {
            break;
        }
        CHECK_ST(st, RINGFENCE_OK);
        if (deadline > *now) {
            *now = deadline;
        }
        CHECK_ST(ringfence_engine_on_timeout(e, *now), RINGFENCE_OK);
        sent += collect(e, scratch)->n;
        events(e, &ev);
    }
    if (until > *now) {
        *now = until;
    }
    CHECK_ST(ringfence_engine_on_timeout(e, *now), RINGFENCE_OK);
    sent += collect(e, scratch)->n;
    events(e, &ev);
    return sent;
}

/* ----- the tests ---------------------------------------------------------------------- */

static void test_static_functions(void) {
    const char *seen[9];
    for (unsigned s = RINGFENCE_OK; s <= RINGFENCE_PANIC; s++) {
        const char *d = ringfence_status_str((ringfence_status)s);
        CHECK(d != NULL && d[0] != '\0');
        for (unsigned j = 0; j < s; j++) {
            CHECK(strcmp(seen[j], d) != 0); /* each status has its own text */
        }
        seen[s] = d;
    }
    CHECK_CONTAINS(ringfence_status_str(RINGFENCE_BUFFER_TOO_SMALL), "out_len");
    /* Any uint32_t is accepted: values that are not a status get a static text of their
     * own. */
    const uint32_t unknown[] = {RINGFENCE_PANIC + 1, 0xA5A5A5A5u, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *d = ringfence_status_str(unknown[i]);
        CHECK(d != NULL);
        CHECK_CONTAINS(d, "unknown status");
        for (unsigned j = RINGFENCE_OK; j <= RINGFENCE_PANIC; j++) {
            CHECK(strcmp(seen[j], d) != 0);
        }
    }

    const char *v = ringfence_version();
    CHECK(v != NULL && v[0] >= '0' && v[0] <= '9' && strchr(v, '.') != NULL);

    /* The panic boundary: a panic becomes a status and the program carries on. */
    CHECK_ST(ringfence_selftest_panic(), RINGFENCE_PANIC);
    CHECK_ST(ringfence_selftest_panic(), RINGFENCE_PANIC);
    ringfence_config *cfg = NULL;
    CHECK_ST(ringfence_config_new(&cfg), RINGFENCE_OK);
    ringfence_config_free(cfg);

    /* _free(NULL) is a no-op. */
    ringfence_config_free(NULL);
    ringfence_ledger_free(NULL);
    ringfence_engine_free(NULL);
    CHECK(ringfence_ledger_active_calls(NULL) == 0);
}

static void test_config_builder(void) {
    CHECK_ST(ringfence_config_new(NULL), RINGFENCE_NULL_ARGUMENT);

    /* NULL config for every setter. */
    CHECK_ST(ringfence_config_set_seed(NULL, 1), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_set_max_calls(NULL, 1), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_set_calls_per_second(NULL, 1.0), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_set_ring_timeout_ms(NULL, 1000), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_set_ask_host(NULL, 0), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_add_default_target(NULL, "192.0.2.20:5080"),
             RINGFENCE_NULL_ARGUMENT);

    ringfence_config *cfg = NULL;
    CHECK_ST(ringfence_config_new(&cfg), RINGFENCE_OK);
    CHECK_ST(ringfence_config_add_default_target(cfg, NULL), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_set_seed(cfg, UINT64_MAX), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_max_calls(cfg, 0), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_max_calls(cfg, 500), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_calls_per_second(cfg, 0.0), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_calls_per_second(cfg, 25.5), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_calls_per_second(cfg, -1.0), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_config_set_calls_per_second(cfg, NAN), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_config_set_calls_per_second(cfg, INFINITY), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_config_set_ring_timeout_ms(cfg, 30000), RINGFENCE_OK);
    for (uint32_t mode = 0; mode <= 2; mode++) {
        CHECK_ST(ringfence_config_set_ask_host(cfg, mode), RINGFENCE_OK);
    }
    CHECK_ST(ringfence_config_set_ask_host(cfg, 3), RINGFENCE_INVALID_ARGUMENT);
    /* Invalid targets. */
    CHECK_ST(ringfence_config_add_default_target(cfg, ""), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_config_add_default_target(cfg, "not a target"),
             RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_config_add_default_target(cfg, "carrier.example:5060"),
             RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_config_add_default_target(cfg, "\xff\xfe:5060"),
             RINGFENCE_INVALID_ARGUMENT);
    /* Valid targets: host:port, IPv6, a sip: URI with an IP host. */
    CHECK_ST(ringfence_config_add_default_target(cfg, "192.0.2.20:5080"), RINGFENCE_OK);
    CHECK_ST(ringfence_config_add_default_target(cfg, "[2001:db8::20]:5080"), RINGFENCE_OK);
    CHECK_ST(ringfence_config_add_default_target(cfg, "sip:192.0.2.21:5080"), RINGFENCE_OK);

    /* The config is copied into the engine: freeing it first is fine. */
    ringfence_engine *e = NULL;
    char err[256] = "";
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, err, sizeof err), RINGFENCE_OK);
    ringfence_config_free(cfg);
    ringfence_stats s = stats_of(e);
    CHECK(s.datagrams == 0 && s.active_calls == 0 && s.draining == 0);
    ringfence_engine_free(e);

    /* A config the engine refuses: the error names the field; *out stays untouched. */
    CHECK_ST(ringfence_config_new(&cfg), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_ring_timeout_ms(cfg, 0), RINGFENCE_OK); /* checked later */
    e = NULL;
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, err, sizeof err), RINGFENCE_INVALID_CONFIG);
    CHECK(e == NULL);
    CHECK_CONTAINS(err, "ring_timeout");
    /* err_buf may be NULL; a short one is truncated and still NUL-terminated. */
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, NULL, 0), RINGFENCE_INVALID_CONFIG);
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, NULL, 64), RINGFENCE_INVALID_CONFIG);
    char small[16];
    memset(small, 'X', sizeof small);
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, small, 8), RINGFENCE_INVALID_CONFIG);
    CHECK(strlen(small) == 7);
    CHECK(small[8] == 'X' && small[15] == 'X'); /* nothing past err_cap */
    memset(small, 'X', sizeof small);
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, small, 0), RINGFENCE_INVALID_CONFIG);
    CHECK(small[0] == 'X');
    CHECK(e == NULL);
    /* The ledger validates the same way. */
    ringfence_ledger *l = NULL;
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_ledger_new(cfg, T0, &l, err, sizeof err), RINGFENCE_INVALID_CONFIG);
    CHECK(l == NULL);
    CHECK_CONTAINS(err, "ring_timeout");
    ringfence_config_free(cfg);

    /* An out-of-range admission rate is refused by validation, not the setter. */
    CHECK_ST(ringfence_config_new(&cfg), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_calls_per_second(cfg, 5e6), RINGFENCE_OK);
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_engine_new(cfg, T0, &e, err, sizeof err), RINGFENCE_INVALID_CONFIG);
    CHECK_CONTAINS(err, "calls_per_second");
    ringfence_config_free(cfg);
}

static void test_toml(void) {
    ringfence_config *cfg = NULL;
    char err[512];

    /* The router example's format. */
    static const char good[] = "seed = 1\n"
                               "\n"
                               "[routing]\n"
                               "default_route = [\"127.0.0.1:5080\"]\n"
                               "no_route_status = 404\n"
                               "\n"
                               "[[routing.routes]]\n"
                               "number = \"+1 800 555 0199\"\n"
                               "targets = [\"127.0.0.1:5080\", { uri = \"sip:127.0.0.1:5081\", "
                               "priority = 1 }]\n"
                               "\n"
                               "[proxy]\n"
                               "ring_timeout_s = 60\n"
                               "failover_statuses = [408, 500, 502, 503, 504]\n"
                               "downstream_503_status = 500\n";
    CHECK_ST(ringfence_config_from_toml(good, strlen(good), &cfg, err, sizeof err), RINGFENCE_OK);
    CHECK(cfg != NULL);
    ringfence_engine *e = engine_from(cfg);
    ringfence_engine_free(e);

    /* Not NUL-terminated: only `len` bytes are read (the rest would not parse). */
    static const char prefix[] = "seed = 7\n[routing]\ndefault_route = [\"192.0.2.20:5080\"]\n"
                                 "THIS IS NOT TOML [[[";
    size_t prefix_len = (size_t)(strstr(prefix, "THIS") - prefix);
    cfg = NULL;
    CHECK_ST(ringfence_config_from_toml(prefix, prefix_len, &cfg, err, sizeof err), RINGFENCE_OK);
    ringfence_config_free(cfg);
    cfg = NULL;
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_config_from_toml(prefix, strlen(prefix), &cfg, err, sizeof err),
             RINGFENCE_INVALID_CONFIG);
    CHECK(cfg == NULL);
    CHECK_CONTAINS(err, "line 4");

    /* Empty text is the default config. */
    CHECK_ST(ringfence_config_from_toml("", 0, &cfg, err, sizeof err), RINGFENCE_OK);
    ringfence_config_free(cfg);
    cfg = NULL;

    /* An invalid value: the message names the field and the line. */
    static const char bad_target[] = "seed = 1\n\n[routing]\ndefault_route = [\"nope\"]\n";
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_config_from_toml(bad_target, strlen(bad_target), &cfg, err, sizeof err),
             RINGFENCE_INVALID_CONFIG);
    CHECK(cfg == NULL);
    CHECK_CONTAINS(err, "default_route");
    CHECK_CONTAINS(err, "line 4");

    /* A syntax error. */
    static const char syntax[] = "seed = 1\nseed2 = \n";
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_config_from_toml(syntax, strlen(syntax), &cfg, err, sizeof err),
             RINGFENCE_INVALID_CONFIG);
    CHECK_CONTAINS(err, "line 2");

    /* An unknown setting. */
    static const char unknown[] = "[proxy]\nring_timeout = 5\n";
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_config_from_toml(unknown, strlen(unknown), &cfg, err, sizeof err),
             RINGFENCE_INVALID_CONFIG);
    CHECK_CONTAINS(err, "ring_timeout");
    CHECK_CONTAINS(err, "line 2");

    /* Not UTF-8. */
    static const char latin1[] = "seed = 1\n# caf\xe9\n";
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_config_from_toml(latin1, strlen(latin1), &cfg, err, sizeof err),
             RINGFENCE_INVALID_CONFIG);
    CHECK_CONTAINS(err, "UTF-8");
    CHECK(cfg == NULL);

    /* NULL arguments. err_buf NULL is allowed. */
    CHECK_ST(ringfence_config_from_toml(NULL, 0, &cfg, err, sizeof err), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_from_toml(good, strlen(good), NULL, err, sizeof err),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_config_from_toml(bad_target, strlen(bad_target), &cfg, NULL, 0),
             RINGFENCE_INVALID_CONFIG);
    CHECK_ST(ringfence_config_from_toml(bad_target, strlen(bad_target), &cfg, NULL, 100),
             RINGFENCE_INVALID_CONFIG);
    CHECK(cfg == NULL);
}

/* NULL for every pointer parameter of every engine function, and out-of-range values. */
static void test_engine_arguments(void) {
    ringfence_engine *e = engine_from(routed_config("192.0.2.20:5080"));
    uint64_t now = T0;
    char msg[MSG_CAP];
    size_t len = options(msg, "nulls");
    uint8_t buf[64];
    size_t out_len = 0;
    uint64_t ns = 0;
    ringfence_addr dest, src;
    ringfence_event ev;
    ringfence_stats st;
    char text[64];
    const char *targets[] = {"192.0.2.20:5080"};
    ringfence_config *cfg = NULL;
    ringfence_ledger *ledger = NULL;
    ringfence_engine *out = NULL;

    /* constructors */
    CHECK_ST(ringfence_config_new(&cfg), RINGFENCE_OK);
    CHECK_ST(ringfence_ledger_new(NULL, now, &ledger, text, sizeof text), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_ledger_new(cfg, now, NULL, text, sizeof text), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_new(NULL, now, &out, text, sizeof text), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_new(cfg, now, NULL, text, sizeof text), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_ledger_new(cfg, now, &ledger, NULL, 0), RINGFENCE_OK);
    CHECK_ST(ringfence_engine_new_with_ledger(NULL, ledger, now, &out, text, sizeof text),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_new_with_ledger(cfg, NULL, now, &out, text, sizeof text),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_new_with_ledger(cfg, ledger, now, NULL, text, sizeof text),
             RINGFENCE_NULL_ARGUMENT);
    CHECK(out == NULL);
    ringfence_ledger_free(ledger);
    ringfence_config_free(cfg);

    /* recv */
    CHECK_ST(ringfence_engine_recv(NULL, now, &CARRIER, &NODE, (const uint8_t *)msg, len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_recv(e, now, NULL, &NODE, (const uint8_t *)msg, len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_recv(e, now, &CARRIER, NULL, (const uint8_t *)msg, len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_recv(e, now, &CARRIER, &NODE, NULL, len), RINGFENCE_NULL_ARGUMENT);
    ringfence_addr bad = CARRIER;
    bad.family = 9;
    CHECK_ST(ringfence_engine_recv(e, now, &bad, &NODE, (const uint8_t *)msg, len),
             RINGFENCE_INVALID_ARGUMENT);
    bad.family = 0;
    CHECK_ST(ringfence_engine_recv(e, now, &CARRIER, &bad, (const uint8_t *)msg, len),
             RINGFENCE_INVALID_ARGUMENT);
    /* None of those reached the engine. */
    st = stats_of(e);
    CHECK(st.datagrams == 0);
    /* An empty datagram (NULL with length 0) is fine: it is the peer's problem. */
    CHECK_ST(ringfence_engine_recv(e, now, &CARRIER, &NODE, NULL, 0), RINGFENCE_OK);

    /* send: checked before anything is taken. */
    feed(e, now, &CARRIER, msg, len); /* queues a 200 for the OPTIONS */
    CHECK_ST(ringfence_engine_send(NULL, buf, sizeof buf, &out_len, &dest, &src),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_send(e, NULL, sizeof buf, &out_len, &dest, &src),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_send(e, buf, sizeof buf, NULL, &dest, &src),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_send(e, buf, sizeof buf, &out_len, NULL, &src),
             RINGFENCE_NULL_ARGUMENT);
    sent_list *sl = malloc(sizeof *sl);
    CHECK(sl != NULL);
    collect(e, sl);
    CHECK(sl->n == 1);
    ONE_TO(sl, CARRIER, "SIP/2.0 200");

    /* timers */
    CHECK_ST(ringfence_engine_timeout_ns(NULL, &ns), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_timeout_ns(e, NULL), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_on_timeout(NULL, now), RINGFENCE_NULL_ARGUMENT);

    /* events */
    CHECK_ST(ringfence_engine_poll_event(NULL, &ev), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_poll_event(e, NULL), RINGFENCE_NULL_ARGUMENT);
    /* Nothing to take: RINGFENCE_DONE and *out untouched. */
    event_list *evl = malloc(sizeof *evl);
    CHECK(evl != NULL);
    events(e, evl);
    free(evl);
    unsigned char before[sizeof ev];
    memset(&ev, 0x5A, sizeof ev);
    memcpy(before, &ev, sizeof ev);
    CHECK_ST(ringfence_engine_poll_event(e, &ev), RINGFENCE_DONE);
    CHECK(memcmp(before, &ev, sizeof ev) == 0);

    /* routing decisions */
    CHECK_ST(ringfence_engine_route(NULL, now, 1, targets, 1), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_route(e, now, 1, NULL, 1), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(NULL, now, 1, 486), RINGFENCE_NULL_ARGUMENT);

    /* drain, load, health */
    CHECK_ST(ringfence_engine_drain(NULL, now), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_undrain(NULL, now), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_report_load(NULL, now, 0.5), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_report_load(e, now, NAN), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_report_load(e, now, -0.1), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_report_load(e, now, INFINITY), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_set_health_override(NULL, now, 0), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_set_health_override(e, now, 3), RINGFENCE_INVALID_ARGUMENT);

    /* text outputs */
    CHECK_ST(ringfence_engine_bypass_signal(NULL, now, 0, text, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_bypass_signal(e, now, 0, NULL, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_bypass_signal(e, now, 0, text, sizeof text, NULL),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(NULL, now, "n1", 0, text, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(e, now, NULL, 0, text, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(e, now, "n1", 0, NULL, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(e, now, "n1", 0, text, sizeof text, NULL),
             RINGFENCE_NULL_ARGUMENT);
    /* The node name is one token: no spaces, no '=', not empty. */
    CHECK_ST(ringfence_engine_node_report(e, now, "node one", 0, text, sizeof text, &out_len),
             RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(e, now, "a=b", 0, text, sizeof text, &out_len),
             RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(e, now, "", 0, text, sizeof text, &out_len),
             RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_node_report(e, now, "\xff", 0, text, sizeof text, &out_len),
             RINGFENCE_INVALID_ARGUMENT);
    st.struct_size = sizeof st;
    CHECK_ST(ringfence_engine_stats(NULL, &st), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_stats(e, NULL), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_stats_prometheus(NULL, text, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_stats_prometheus(e, NULL, sizeof text, &out_len),
             RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_stats_prometheus(e, text, sizeof text, NULL),
             RINGFENCE_NULL_ARGUMENT);

    /* A datagram that is not SIP is counted, never an error. */
    static const char junk[] = "\x01\x02 this is not SIP \xff\r\n\r\n";
    feed(e, now, &CARRIER, junk, sizeof junk - 1);
    st = stats_of(e);
    CHECK(st.malformed >= 1);
    CHECK(st.datagrams == 3);
    collect(e, sl);
    CHECK(sl->n == 0);

    free(sl);
    ringfence_engine_free(e);
}

/* A too-small buffer: RINGFENCE_BUFFER_TOO_SMALL with the size it needs, NUL included,
 * nothing written past cap; then that size works and the text fills it exactly. */
typedef ringfence_status (*text_fn)(ringfence_engine *e, uint64_t now, char *buf, size_t cap,
                                    size_t *out_len);

static ringfence_engine *g_text_engine;
static const char *g_node_name;

static ringfence_status bypass_fn(ringfence_engine *e, uint64_t now, char *buf, size_t cap,
                                  size_t *out_len) {
    return ringfence_engine_bypass_signal(e, now, UINT64_C(1700000000000), buf, cap, out_len);
}

static ringfence_status report_fn(ringfence_engine *e, uint64_t now, char *buf, size_t cap,
                                  size_t *out_len) {
    return ringfence_engine_node_report(e, now, g_node_name, UINT64_C(1700000000000), buf, cap,
                                        out_len);
}

static ringfence_status prometheus_fn(ringfence_engine *e, uint64_t now, char *buf, size_t cap,
                                      size_t *out_len) {
    (void)now;
    return ringfence_engine_stats_prometheus(e, buf, cap, out_len);
}

/* Returns the text (malloc'd). */
static char *text_sized(text_fn fn, uint64_t now) {
    char probe[8];
    memset(probe, 'X', sizeof probe);
    size_t need = 0;
    CHECK_ST(fn(g_text_engine, now, probe, 4, &need), RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(need > 4);
    CHECK(probe[4] == 'X'); /* nothing past cap */
    size_t need0 = 0;
    CHECK_ST(fn(g_text_engine, now, probe, 0, &need0), RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(need0 == need);
    /* (NULL, 0) is a size query, as with snprintf; NULL with room is still an error. */
    size_t query = 0;
    CHECK_ST(fn(g_text_engine, now, NULL, 0, &query), RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(query == need);
    CHECK_ST(fn(g_text_engine, now, NULL, need, &query), RINGFENCE_NULL_ARGUMENT);
    char *buf = malloc(need);
    CHECK(buf != NULL);
    size_t len = 0;
    /* One byte short of room for the NUL is still too small. */
    CHECK_ST(fn(g_text_engine, now, buf, need - 1, &len), RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(len == need);
    len = 0;
    CHECK_ST(fn(g_text_engine, now, buf, need, &len), RINGFENCE_OK);
    CHECK(len == need - 1); /* on success: the length without the NUL */
    CHECK(buf[len] == '\0' && strlen(buf) == len);
    return buf;
}

/* The value of the sample `name` (labels included) in Prometheus text; UINT64_MAX when
 * it is missing, so that a missing sample never compares equal to a counter. */
static uint64_t prom_value(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ') {
            return strtoull(line + n + 1, NULL, 10);
        }
        line = strchr(line, '\n');
        if (line != NULL) {
            line++;
        }
    }
    return UINT64_MAX;
}

/* ringfence_stats agrees with the Prometheus text, the new counters included. */
static ringfence_stats stats_agree(ringfence_engine *e, uint64_t now) {
    ringfence_stats s = stats_of(e);
    g_text_engine = e;
    char *t = text_sized(prometheus_fn, now);
    CHECK(prom_value(t, "ringfence_datagrams_total") == s.datagrams);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"started\"}") == s.calls_started);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"answered\"}") == s.calls_answered);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"rejected\"}") == s.calls_rejected);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"cancelled\"}") == s.calls_cancelled);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"no_answer\"}") == s.calls_no_answer);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"superseded\"}") == s.calls_superseded);
    CHECK(prom_value(t, "ringfence_calls_total{outcome=\"ended\"}") == s.calls_ended);
    CHECK(prom_value(t, "ringfence_invites_forwarded_total") == s.invites_forwarded);
    CHECK(prom_value(t, "ringfence_failovers_total") == s.failovers);
    for (int i = 0; i < 6; i++) {
        char name[64];
        snprintf(name, sizeof name, "ringfence_responses_sent_total{class=\"%dxx\"}", i + 1);
        CHECK(prom_value(t, name) == s.responses_sent[i]);
    }
    free(t);
    return s;
}

static bool bytes_are(const unsigned char *p, size_t from, size_t to, unsigned char v) {
    for (size_t i = from; i < to; i++) {
        if (p[i] != v) {
            return false;
        }
    }
    return true;
}

/* ringfence_stats is versioned by struct_size: the library fills no more than the caller
 * says it has, never more than it knows, and writes back how much it filled. */
static void test_stats_size(void) {
    ringfence_engine *e = engine_from(routed_config("192.0.2.20:5080"));
    char msg[MSG_CAP];
    size_t len = options(msg, "sizes");
    feed(e, T0, &CARRIER, msg, len);
    sent_list *out = malloc(sizeof *out);
    CHECK(out != NULL);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 200 ");
    free(out);

    union {
        ringfence_stats s;
        unsigned char bytes[sizeof(ringfence_stats) + 64];
    } u;
    const size_t full = sizeof(ringfence_stats), room = sizeof u.bytes;

    /* Too small to hold even struct_size: refused, nothing written. */
    for (size_t bad = 0; bad < sizeof(size_t); bad++) {
        memset(&u, 0xA5, sizeof u);
        u.s.struct_size = bad;
        CHECK_ST(ringfence_engine_stats(e, &u.s), RINGFENCE_INVALID_ARGUMENT);
        CHECK(u.s.struct_size == bad);
        CHECK(bytes_are(u.bytes, sizeof(size_t), room, 0xA5));
    }

    /* Only struct_size: written back, nothing else. */
    memset(&u, 0xA5, sizeof u);
    u.s.struct_size = sizeof(size_t);
    CHECK_ST(ringfence_engine_stats(e, &u.s), RINGFENCE_OK);
    CHECK(u.s.struct_size == sizeof(size_t));
    CHECK(bytes_are(u.bytes, sizeof(size_t), room, 0xA5));

    /* An older, shorter struct (up to `requests`): only its fields are written. */
    const size_t older = offsetof(ringfence_stats, responses);
    memset(&u, 0xA5, sizeof u);
    u.s.struct_size = older;
    CHECK_ST(ringfence_engine_stats(e, &u.s), RINGFENCE_OK);
    CHECK(u.s.struct_size == older);
    CHECK(u.s.datagrams == 1 && u.s.requests == 1);
    CHECK(bytes_are(u.bytes, older, room, 0xA5));

    /* A newer, longer struct: what this library knows is filled, the rest untouched,
     * and struct_size says where the library's part ends. */
    memset(&u, 0xA5, sizeof u);
    u.s.struct_size = room;
    CHECK_ST(ringfence_engine_stats(e, &u.s), RINGFENCE_OK);
    CHECK(u.s.struct_size == full);
    CHECK(u.s.datagrams == 1 && u.s.requests == 1 && u.s.responses == 0);
    CHECK(u.s.responses_sent[1] == 1); /* the 200 for the OPTIONS */
    CHECK(u.s.draining == 0 && u.s.health_state == 0);
    CHECK(bytes_are(u.bytes, full, room, 0xA5));

    /* This header's own size: everything. */
    ringfence_stats s = stats_agree(e, T0);
    CHECK(s.datagrams == 1 && s.invites_forwarded == 0 && s.calls_no_answer == 0);
    CHECK(s.responses_sent[0] == 0 && s.responses_sent[1] == 1 && s.responses_sent[3] == 0);
    ringfence_engine_free(e);
}

static void test_text_outputs(void) {
    ringfence_engine *e = engine_from(routed_config("192.0.2.20:5080"));
    uint64_t now = T0 + NS_PER_S;
    g_text_engine = e;
    event_list *ev = malloc(sizeof *ev);
    CHECK(ev != NULL);

    char *t = text_sized(bypass_fn, now);
    CHECK(starts_with(t, "v=1 state=healthy bypass=0 "));
    CHECK_CONTAINS(t, "issued_at_ms=1700000000000");
    free(t);

    g_node_name = "c-abi-test";
    t = text_sized(report_fn, now);
    CHECK(starts_with(t, "v=1 node=c-abi-test state=healthy "));
    CHECK_CONTAINS(t, "draining=0");
    free(t);

    t = text_sized(prometheus_fn, now);
    CHECK_CONTAINS(t, "# TYPE ringfence_datagrams_total counter\n");
    CHECK_CONTAINS(t, "\nringfence_datagrams_total 0\n");
    CHECK_CONTAINS(t, "ringfence_calls_total{outcome=\"started\"} 0\n");
    free(t);

    /* Forced bypass: the signal says so, a HEALTH_CHANGED event reports it. */
    CHECK_ST(ringfence_engine_set_health_override(e, now, 1), RINGFENCE_OK);
    events(e, ev);
    const ringfence_event *h = find_kind(ev, RINGFENCE_EVENT_HEALTH_CHANGED);
    CHECK(h != NULL);
    CHECK(h->state == 2);
    CHECK(h->value >= 0.0 && h->value <= 1.0);
    ringfence_stats s = stats_of(e);
    CHECK(s.health_state == 2);
    t = text_sized(bypass_fn, now);
    CHECK(starts_with(t, "v=1 state=bypass bypass=1 "));
    free(t);
    /* Forced normal, then automatic again. */
    CHECK_ST(ringfence_engine_set_health_override(e, now, 2), RINGFENCE_OK);
    t = text_sized(bypass_fn, now);
    CHECK_CONTAINS(t, "bypass=0");
    free(t);
    CHECK_ST(ringfence_engine_set_health_override(e, now, 0), RINGFENCE_OK);
    events(e, ev);

    /* Load reports: any finite value >= 0 is accepted (above 1.0 means work queues up). */
    for (int i = 0; i < 5; i++) {
        now += NS_PER_S;
        CHECK_ST(ringfence_engine_report_load(e, now, i < 3 ? 0.25 : 1.5), RINGFENCE_OK);
        events(e, ev);
    }

    free(ev);
    ringfence_engine_free(e);
}

/* INVITE -> 100 + forwarded INVITE -> 180 -> 200 -> ACK -> (drain) -> BYE -> 200. */
static void test_full_call(void) {
    ringfence_config *cfg = routed_config("192.0.2.20:5080");
    CHECK_ST(ringfence_config_set_ring_timeout_ms(cfg, 60000), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_max_calls(cfg, 100), RINGFENCE_OK);
    ringfence_engine *e = engine_from(cfg);
    uint64_t now = T0;
    sent_list *out = malloc(sizeof *out);
    sent_list *scratch = malloc(sizeof *scratch);
    event_list *ev = malloc(sizeof *ev);
    CHECK(out != NULL && scratch != NULL && ev != NULL);
    char msg[MSG_CAP], inv[MSG_CAP];
    size_t len;

    uint64_t deadline = 0;
    ringfence_status tst = ringfence_engine_timeout_ns(e, &deadline);
    CHECK(tst == RINGFENCE_OK || tst == RINGFENCE_DONE);

    /* The carrier's INVITE. */
    size_t inv_len = invite(inv, "call1");
    now += NS_PER_MS;
    feed(e, now, &CARRIER, inv, inv_len);

    /* Too small: the required size, and the datagram stays queued. */
    uint8_t tiny[8];
    size_t need = 0, need2 = 0;
    ringfence_addr dest, src;
    CHECK_ST(ringfence_engine_send(e, tiny, sizeof tiny, &need, &dest, &src),
             RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(need > sizeof tiny);
    CHECK_ST(ringfence_engine_send(e, tiny, sizeof tiny, &need2, &dest, &src),
             RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(need2 == need); /* nothing was consumed */
    CHECK_ST(ringfence_engine_send(e, tiny, 0, &need2, &dest, &src), RINGFENCE_BUFFER_TOO_SMALL);
    CHECK(need2 == need);
    uint8_t *exact = malloc(need);
    CHECK(exact != NULL);
    size_t got = 0;
    CHECK_ST(ringfence_engine_send(e, exact, need - 1, &got, &dest, &src),
             RINGFENCE_BUFFER_TOO_SMALL);
    /* src may be NULL. */
    CHECK_ST(ringfence_engine_send(e, exact, need, &got, &dest, NULL), RINGFENCE_OK);
    CHECK(got == need);
    /* The first datagram, then the rest. */
    out->n = 1;
    memcpy(out->items[0].bytes, exact, got);
    out->items[0].bytes[got] = '\0';
    out->items[0].len = got;
    out->items[0].dest = dest;
    out->items[0].src = NODE;
    free(exact);
    collect_into(e, out);
    CHECK(out->n == 2);
    ONE_TO(out, CARRIER, "SIP/2.0 100 ");
    const sent_t *fwd_p = ONE_TO(out, DEST, "INVITE sip:+18005550199@192.0.2.20:5080 SIP/2.0\r\n");
    sent_t fwd = *fwd_p;
    for (size_t i = 1; i < out->n; i++) {
        CHECK(addr_eq(&out->items[i].src, &NODE));
    }
    CHECK(header_count(fwd.bytes, "Via", "v") == 2);
    CHECK_CONTAINS(fwd.bytes, "Record-Route: <sip:192.0.2.10:5060;lr>\r\n");
    CHECK_CONTAINS(fwd.bytes, "Max-Forwards: 69\r\n");
    CHECK_CONTAINS(fwd.bytes, SDP); /* body untouched */

    events(e, ev);
    const ringfence_event *started = find_kind(ev, RINGFENCE_EVENT_CALL_STARTED);
    CHECK(started != NULL);
    uint64_t call = started->call;
    CHECK(strcmp(started->dialled, "18005550199") == 0);
    CHECK(strcmp(started->caller, "14155550123") == 0);
    CHECK(count_kind(ev, RINGFENCE_EVENT_ROUTE_REQUEST) == 0);
    ringfence_stats s = stats_of(e);
    CHECK(s.datagrams == 1 && s.requests == 1 && s.calls_started == 1 && s.active_calls == 1);

    /* The carrier retransmits the INVITE: absorbed, the 100 resent, nothing forwarded. */
    now += 200 * NS_PER_MS; /* before Timer A (500 ms) retransmits the forwarded INVITE */
    feed(e, now, &CARRIER, inv, inv_len);
    collect(e, out);
    CHECK(out->n == 1);
    ONE_TO(out, CARRIER, "SIP/2.0 100 ");
    s = stats_of(e);
    CHECK(s.retransmissions_absorbed == 1);

    /* 180 from the destination: relayed upstream with our Via popped. */
    now += 100 * NS_PER_MS;
    len = response_to(msg, &fwd, 180, "Ringing", "callee1");
    feed(e, now, &DEST, msg, len);
    collect(e, out);
    const sent_t *ring = ONE_TO(out, CARRIER, "SIP/2.0 180 ");
    CHECK(header_count(ring->bytes, "Via", "v") == 1);
    CHECK_CONTAINS(ring->bytes, "branch=z9hG4bKcall1");

    /* 200: relayed; the call is answered. */
    now += 2 * NS_PER_S;
    len = response_to(msg, &fwd, 200, "OK", "callee1");
    feed(e, now, &DEST, msg, len);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 200 ");
    events(e, ev);
    const ringfence_event *answered = find_kind(ev, RINGFENCE_EVENT_CALL_ANSWERED);
    CHECK(answered != NULL);
    CHECK(answered->call == call);
    CHECK(answered->duration_ms >= 2000 && answered->duration_ms <= 3000); /* setup time */

    /* ACK for the 2xx, routed by our Record-Route. */
    now += 50 * NS_PER_MS;
    len = request(msg, "ACK", "sip:callee@192.0.2.20:5080", "call1", "ack1", 1, "callee1", true,
                  "");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    const sent_t *ack = ONE_TO(out, DEST, "ACK sip:callee@192.0.2.20:5080 SIP/2.0\r\n");
    CHECK(header_count(ack->bytes, "Route", NULL) == 0); /* our Route popped */

    /* Drain while the call is up: no DRAINED yet; new calls are refused. */
    CHECK_ST(ringfence_engine_drain(e, now), RINGFENCE_OK);
    events(e, ev);
    CHECK(count_kind(ev, RINGFENCE_EVENT_DRAINED) == 0);
    s = stats_of(e);
    CHECK(s.draining == 1 && s.active_calls == 1);
    len = invite_from(msg, "+14155550124", "refused1");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    CHECK(count_to(out, &DEST, "INVITE ") == 0);
    ONE_TO(out, CARRIER, "SIP/2.0 503 ");
    s = stats_of(e);
    CHECK(s.refused == 1);

    /* BYE from the caller; the callee answers 200; the call ends, the node drained. */
    now += 30 * NS_PER_S;
    len = request(msg, "BYE", "sip:callee@192.0.2.20:5080", "call1", "bye1", 2, "callee1", true,
                  "");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    sent_t bye = *ONE_TO(out, DEST, "BYE sip:callee@192.0.2.20:5080 SIP/2.0\r\n");
    len = response_to(msg, &bye, 200, "OK", NULL);
    feed(e, now, &DEST, msg, len);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 200 ");
    events(e, ev);
    const ringfence_event *ended = find_kind(ev, RINGFENCE_EVENT_CALL_ENDED);
    CHECK(ended != NULL);
    CHECK(ended->call == call);
    CHECK(ended->end_reason == RINGFENCE_END_HANGUP_CALLER);
    CHECK(ended->duration_ms >= 30000 && ended->duration_ms <= 31000);
    CHECK(count_kind(ev, RINGFENCE_EVENT_DRAINED) == 1);

    s = stats_of(e);
    CHECK(s.calls_started == 1 && s.calls_answered == 1 && s.calls_ended == 1);
    CHECK(s.calls_rejected == 0 && s.calls_cancelled == 0);
    CHECK(s.active_calls == 0);
    CHECK(s.datagrams == 8 && s.requests == 5 && s.responses == 3);
    CHECK(s.malformed == 0);
    s = stats_agree(e, now);
    CHECK(s.invites_forwarded == 1 && s.failovers == 0 && s.calls_no_answer == 0);
    CHECK(s.responses_sent[1] >= 2); /* the 200s for the INVITE and the BYE, relayed */
    CHECK(s.responses_sent[4] == 1); /* the 503 refusing the call while draining */

    /* The call is over: its handle is stale. */
    const char *targets[] = {"192.0.2.20:5080"};
    CHECK_ST(ringfence_engine_reject(e, now, call, 486), RINGFENCE_UNKNOWN_CALL);
    CHECK_ST(ringfence_engine_route(e, now, call, targets, 1), RINGFENCE_UNKNOWN_CALL);
    CHECK_ST(ringfence_engine_reject(e, now, UINT64_C(0xdeadbeef), 486), RINGFENCE_UNKNOWN_CALL);
    /* The status is checked before the handle: a bad one is INVALID_ARGUMENT whatever the
     * handle. */
    CHECK_ST(ringfence_engine_reject(e, now, call, 200), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(e, now, UINT64_C(0xdeadbeef), 700), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(e, now, 0, 399), RINGFENCE_INVALID_ARGUMENT);

    /* Undrain: OPTIONS is answered 200 again. */
    CHECK_ST(ringfence_engine_undrain(e, now), RINGFENCE_OK);
    s = stats_of(e);
    CHECK(s.draining == 0);
    len = options(msg, "opt-after");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 200 ");

    /* The Prometheus text agrees with the counters. */
    g_text_engine = e;
    char *t = text_sized(prometheus_fn, now);
    CHECK_CONTAINS(t, "ringfence_calls_total{outcome=\"answered\"} 1\n");
    CHECK_CONTAINS(t, "ringfence_calls_total{outcome=\"ended\"} 1\n");
    CHECK_CONTAINS(t, "ringfence_retransmissions_absorbed_total 1\n");
    free(t);

    /* Every deadline runs out eventually (5 h of virtual time at most). */
    run_timers(e, &now, now + UINT64_C(5) * 3600 * NS_PER_S, scratch);
    s = stats_of(e);
    CHECK(s.active_calls == 0);

    free(out);
    free(scratch);
    free(ev);
    ringfence_engine_free(e);
}

/* ask_host = always: the host answers route requests. */
static void test_route_requests(void) {
    ringfence_config *cfg = routed_config("192.0.2.21:5080");
    CHECK_ST(ringfence_config_set_ask_host(cfg, 2), RINGFENCE_OK);
    ringfence_engine *e = engine_from(cfg);
    uint64_t now = T0;
    sent_list *out = malloc(sizeof *out);
    event_list *ev = malloc(sizeof *ev);
    CHECK(out != NULL && ev != NULL);
    char msg[MSG_CAP];

    size_t len = invite(msg, "ask1");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    CHECK(out->n == 1); /* only the 100 while the host decides */
    ONE_TO(out, CARRIER, "SIP/2.0 100 ");
    events(e, ev);
    const ringfence_event *rr = find_kind(ev, RINGFENCE_EVENT_ROUTE_REQUEST);
    CHECK(rr != NULL);
    CHECK(count_kind(ev, RINGFENCE_EVENT_ROUTE_REQUEST) == 1);
    uint64_t call = rr->call;
    CHECK(strcmp(rr->dialled, "18005550199") == 0);
    CHECK(strcmp(rr->caller, "14155550123") == 0);

    /* Bad decisions change nothing. */
    const char *none[] = {NULL};
    const char *junk[] = {"not a target"};
    const char *latin1[] = {"\xff:5060"};
    const char *mixed[] = {"192.0.2.20:5080", "nope"};
    const char *ok[] = {"sip:192.0.2.21:5080", "192.0.2.20:5080"};
    CHECK_ST(ringfence_engine_route(e, now, call, ok, 0), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_route(e, now, call, none, 1), RINGFENCE_NULL_ARGUMENT);
    CHECK_ST(ringfence_engine_route(e, now, call, junk, 1), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_route(e, now, call, latin1, 1), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_route(e, now, call, mixed, 2), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(e, now, call, 200), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(e, now, call, 399), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(e, now, call, 700), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_reject(e, now, call, 0), RINGFENCE_INVALID_ARGUMENT);
    CHECK_ST(ringfence_engine_route(e, now, call + 1000, ok, 2), RINGFENCE_UNKNOWN_CALL);
    /* The first call of a fresh engine: its handle is not 0, and 0 is no call. */
    CHECK(call != 0);
    CHECK_ST(ringfence_engine_reject(e, now, 0, 486), RINGFENCE_UNKNOWN_CALL);
    CHECK_ST(ringfence_engine_route(e, now, 0, ok, 2), RINGFENCE_UNKNOWN_CALL);
    collect(e, out);
    CHECK(out->n == 0);

    /* The decision: tried in the order given. */
    now += 10 * NS_PER_MS;
    CHECK_ST(ringfence_engine_route(e, now, call, ok, 2), RINGFENCE_OK);
    collect(e, out);
    ONE_TO(out, DEST2, "INVITE sip:+18005550199@192.0.2.21:5080 SIP/2.0\r\n");
    CHECK(out->n == 1);
    /* Decided once. */
    CHECK_ST(ringfence_engine_route(e, now, call, ok, 1), RINGFENCE_NOT_ROUTING);
    CHECK_ST(ringfence_engine_reject(e, now, call, 486), RINGFENCE_NOT_ROUTING);

    /* A second call, rejected by the host. */
    len = invite_from(msg, "+14155550125", "ask2");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    events(e, ev);
    rr = find_kind(ev, RINGFENCE_EVENT_ROUTE_REQUEST);
    CHECK(rr != NULL && rr->call != call);
    uint64_t call2 = rr->call;
    CHECK_ST(ringfence_engine_reject(e, now, call2, 486), RINGFENCE_OK);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 486 ");
    events(e, ev);
    const ringfence_event *ended = find_kind(ev, RINGFENCE_EVENT_CALL_ENDED);
    CHECK(ended != NULL);
    CHECK(ended->call == call2);
    CHECK(ended->end_reason == RINGFENCE_END_REJECTED);
    CHECK(ended->status == 486);
    CHECK_ST(ringfence_engine_reject(e, now, call2, 486), RINGFENCE_UNKNOWN_CALL);
    ringfence_stats s = stats_of(e);
    CHECK(s.calls_started == 2 && s.calls_rejected == 1 && s.active_calls == 1);

    /* A third call rejected 503 by the host: sent upstream as downstream_503_status (500
     * by default), never as a 503. */
    len = invite_from(msg, "+14155550127", "ask3");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    events(e, ev);
    rr = find_kind(ev, RINGFENCE_EVENT_ROUTE_REQUEST);
    CHECK(rr != NULL && rr->call != call && rr->call != call2);
    uint64_t call3 = rr->call;
    CHECK_ST(ringfence_engine_reject(e, now, call3, 503), RINGFENCE_OK);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 500 ");
    CHECK(count_to(out, &CARRIER, "SIP/2.0 503 ") == 0);
    events(e, ev);
    ended = find_kind(ev, RINGFENCE_EVENT_CALL_ENDED);
    CHECK(ended != NULL && ended->call == call3);
    CHECK(ended->end_reason == RINGFENCE_END_REJECTED && ended->status == 500);
    s = stats_agree(e, now);
    CHECK(s.calls_started == 3 && s.calls_rejected == 2 && s.active_calls == 1);

    /* Freed with a call still ringing: nothing may leak. */
    free(out);
    free(ev);
    ringfence_engine_free(e);
}

/* Failover and the ring timeout: forwarded INVITEs, failovers and no-answer calls are
 * counted in ringfence_stats as in the Prometheus text. */
static void test_call_counters(void) {
    ringfence_config *cfg = routed_config("192.0.2.20:5080");
    CHECK_ST(ringfence_config_add_default_target(cfg, "192.0.2.21:5080"), RINGFENCE_OK);
    CHECK_ST(ringfence_config_set_ring_timeout_ms(cfg, 5000), RINGFENCE_OK);
    ringfence_engine *e = engine_from(cfg);
    uint64_t now = T0;
    sent_list *out = malloc(sizeof *out);
    sent_list *scratch = malloc(sizeof *scratch);
    event_list *ev = malloc(sizeof *ev);
    CHECK(out != NULL && scratch != NULL && ev != NULL);
    char msg[MSG_CAP];

    size_t len = invite(msg, "cnt1");
    feed(e, now, &CARRIER, msg, len);
    collect(e, out);
    ONE_TO(out, CARRIER, "SIP/2.0 100 ");
    sent_t first = *ONE_TO(out, DEST, "INVITE ");
    events(e, ev);
    const ringfence_event *started = find_kind(ev, RINGFENCE_EVENT_CALL_STARTED);
    CHECK(started != NULL);
    uint64_t call = started->call;

    /* The first destination answers 503: the call fails over to the second. */
    now += 100 * NS_PER_MS;
    len = response_to(msg, &first, 503, "Service Unavailable", "busy1");
    feed(e, now, &DEST, msg, len);
    collect(e, out);
    ONE_TO(out, DEST2, "INVITE ");
    CHECK(count_to(out, &CARRIER, "SIP/2.0 5") == 0);
    ringfence_stats s = stats_agree(e, now);
    CHECK(s.invites_forwarded == 2 && s.failovers == 1);

    /* Nobody answers: the ring timeout ends the call upstream with 408. */
    run_timers(e, &now, now + 6 * NS_PER_S, scratch);
    s = stats_agree(e, now);
    CHECK(s.calls_started == 1 && s.calls_no_answer == 1 && s.calls_answered == 0);
    CHECK(s.calls_rejected == 0 && s.active_calls == 0);
    CHECK(s.invites_forwarded == 2 && s.failovers == 1);
    CHECK(s.responses_sent[0] == 1); /* the 100 */
    CHECK(s.responses_sent[3] >= 1); /* the 408 */
    CHECK(s.responses_sent[4] == 0); /* the 503 was not relayed */
    /* The call is over. */
    CHECK_ST(ringfence_engine_reject(e, now, call, 486), RINGFENCE_UNKNOWN_CALL);

    free(out);
    free(scratch);
    free(ev);
    ringfence_engine_free(e);
}

/* Two engines sharing one ledger: the node-wide limit holds across them. */
static void test_ledger(void) {
    ringfence_config *cfg = routed_config("192.0.2.20:5080");
    CHECK_ST(ringfence_config_set_max_calls(cfg, 1), RINGFENCE_OK);
    ringfence_ledger *ledger = NULL;
    char err[256] = "";
    CHECK_ST(ringfence_ledger_new(cfg, T0, &ledger, err, sizeof err), RINGFENCE_OK);
    CHECK(ledger != NULL);
    CHECK(ringfence_ledger_active_calls(ledger) == 0);

    ringfence_engine *a = NULL, *b = NULL, *other = NULL;
    CHECK_ST(ringfence_engine_new_with_ledger(cfg, ledger, T0, &a, err, sizeof err), RINGFENCE_OK);
    CHECK_ST(ringfence_engine_new_with_ledger(cfg, ledger, T0, &b, err, sizeof err), RINGFENCE_OK);
    /* An engine with other admission settings cannot attach. */
    CHECK_ST(ringfence_config_set_max_calls(cfg, 2), RINGFENCE_OK);
    memset(err, 0, sizeof err);
    CHECK_ST(ringfence_engine_new_with_ledger(cfg, ledger, T0, &other, err, sizeof err),
             RINGFENCE_INVALID_CONFIG);
    CHECK(other == NULL);
    CHECK_CONTAINS(err, "admission");
    ringfence_config_free(cfg);

    sent_list *out = malloc(sizeof *out);
    CHECK(out != NULL);
    char msg[MSG_CAP];
    uint64_t now = T0 + NS_PER_MS;
    size_t len = invite(msg, "led1");
    feed(a, now, &CARRIER, msg, len);
    collect(a, out);
    ONE_TO(out, DEST, "INVITE ");
    CHECK(ringfence_ledger_active_calls(ledger) == 1);

    /* The host may drop its ledger reference: the engines keep it alive. */
    ringfence_ledger_free(ledger);
    ledger = NULL;

    len = invite_from(msg, "+14155550126", "led2");
    feed(b, now, &CARRIER, msg, len);
    collect(b, out);
    CHECK(count_to(out, &DEST, "INVITE ") == 0); /* node full */
    CHECK(count_to(out, &CARRIER, "SIP/2.0 5") + count_to(out, &CARRIER, "SIP/2.0 4") == 1);
    ringfence_stats sa = stats_of(a), sb = stats_of(b);
    CHECK(sa.active_calls == 1 && sb.active_calls == 0);
    CHECK(sb.refused == 1);

    ringfence_engine_free(a);
    len = options(msg, "led-opt");
    feed(b, now, &CARRIER, msg, len);
    collect(b, out);
    ONE_TO(out, CARRIER, "SIP/2.0 200 ");
    free(out);
    ringfence_engine_free(b);
}

/* IPv6 peers and an IPv6 local address. */
static void test_ipv6(void) {
    ringfence_engine *e = engine_from(routed_config("[2001:db8::20]:5080"));
    ringfence_addr peer, local;
    memset(&peer, 0, sizeof peer);
    peer.family = 6;
    peer.port = 5062;
    const uint8_t p6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
    memcpy(peer.ip, p6, 16);
    local = peer;
    local.port = 5060;
    local.ip[15] = 0x10;
    char msg[MSG_CAP];
    int n = snprintf(msg, sizeof msg,
                     "OPTIONS sip:[2001:db8::10] SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKv6opt\r\n"
                     "From: <sip:a@[2001:db8::1]>;tag=1\r\nTo: <sip:[2001:db8::10]>\r\n"
                     "Call-ID: v6@example\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    CHECK(n > 0 && (size_t)n < sizeof msg);
    CHECK_ST(ringfence_engine_recv(e, T0, &peer, &local, (const uint8_t *)msg, (size_t)n),
             RINGFENCE_OK);
    sent_list *out = malloc(sizeof *out);
    CHECK(out != NULL);
    collect(e, out);
    CHECK(out->n == 1);
    CHECK(starts_with(out->items[0].bytes, "SIP/2.0 200 "));
    CHECK(addr_eq(&out->items[0].dest, &peer));
    CHECK(addr_eq(&out->items[0].src, &local));
    free(out);
    ringfence_engine_free(e);
}

int main(void) {
    init_addresses();
    test_static_functions();
    test_config_builder();
    test_toml();
    test_engine_arguments();
    test_text_outputs();
    test_full_call();
    test_route_requests();
    test_call_counters();
    test_stats_size();
    test_ledger();
    test_ipv6();
    printf("abi_test: %lu passed, 0 failed\n", g_checks);
    return 0;
}
