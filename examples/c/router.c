/*
 * A real UDP host for the ringfence engine, in C11 over the C ABI: one socket, one
 * engine, POSIX only. The C twin of examples/router.rs: same flags, same default, same
 * TOML config, same status line and summary.
 *
 *   make -C examples/c && examples/c/router [--listen ADDR] [--config FILE]
 *       [--metrics ADDR] [--for SECS] [--quiet]
 *
 * Without --config it routes every dialled number to 127.0.0.1:5080. It prints a status
 * line every second and a summary on Ctrl-C (SIGINT; SIGTERM does the same) or after
 * --for seconds, then exits 0. Unknown flags print the usage and exit 2; a config or
 * socket error exits 1. With --metrics it serves GET /metrics (Prometheus text),
 * GET /bypass (the bypass signal line) and GET /report (this node's fleet report).
 *
 * The host loop (see DESIGN.md):
 *
 *   poll(socket, engine timeout) -> recvfrom -> ringfence_engine_recv
 *   ringfence_engine_on_timeout(now)
 *   ringfence_engine_send until RINGFENCE_DONE -> sendto
 *   ringfence_engine_poll_event until RINGFENCE_DONE
 *
 * now_ns is CLOCK_MONOTONIC in nanoseconds, the same clock for every call.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ringfence.h"

static const char DEFAULT_CONFIG[] = "\n"
                                     "[routing]\n"
                                     "default_route = [\"127.0.0.1:5080\"]\n";

static const char USAGE[] =
    "usage: router [--listen ADDR] [--config FILE] [--metrics ADDR] [--for SECS] [--quiet]\n"
    "\n"
    "  --listen ADDR   UDP address to listen on (default 127.0.0.1:5060)\n"
    "  --config FILE   TOML configuration (default: route every number to 127.0.0.1:5080)\n"
    "  --metrics ADDR  serve /metrics, /bypass and /report over HTTP on ADDR\n"
    "  --for SECS      exit after SECS seconds with a summary (default: until Ctrl-C)\n"
    "  --quiet         no per-second status line\n"
    "  --help          this text";

#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)
/* Longest poll: keeps the status line on time even when the engine has no deadline. */
#define MAX_WAIT_MS 200
/* Datagrams read per wake-up before timers and events get their turn. */
#define RECV_BATCH 64

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

/* ----- time ----------------------------------------------------------------------- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("router: clock_gettime(CLOCK_MONOTONIC)");
        abort();
    }
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

/* ----- addresses: sockaddr <-> ringfence_addr --------------------------------------- */

/* A sockaddr (AF_INET or AF_INET6) as a ringfence_addr. An IPv4-mapped IPv6 address
 * (what a dual-stack socket reports for an IPv4 peer) becomes family 4. Returns 0, or
 * -1 for another family. */
static int addr_from_sockaddr(const struct sockaddr *sa, ringfence_addr *out) {
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        out->family = 4;
        out->port = ntohs(in->sin_port);
        memcpy(out->ip, &in->sin_addr.s_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        out->port = ntohs(in6->sin6_port);
        if (memcmp(in6->sin6_addr.s6_addr, v4mapped, sizeof v4mapped) == 0) {
            out->family = 4;
            memcpy(out->ip, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            out->family = 6;
            memcpy(out->ip, in6->sin6_addr.s6_addr, 16);
        }
        return 0;
    }
    return -1;
}

/* A ringfence_addr as a sockaddr a socket of `sock_family` can send to: an IPv4
 * destination on an IPv6 socket is written IPv4-mapped. Returns 0, or -1 when the
 * socket cannot reach it (IPv6 destination on an IPv4 socket, unknown family). */
static int addr_to_sockaddr(const ringfence_addr *a, int sock_family,
                            struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    if (a->family == 4 && sock_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->port);
        memcpy(&in->sin_addr.s_addr, a->ip, 4);
        *len = (socklen_t)sizeof *in;
        return 0;
    }
    if ((a->family == 4 || a->family == 6) && sock_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(a->port);
        if (a->family == 4) {
            in6->sin6_addr.s6_addr[10] = 0xff;
            in6->sin6_addr.s6_addr[11] = 0xff;
            memcpy(in6->sin6_addr.s6_addr + 12, a->ip, 4);
        } else {
            memcpy(in6->sin6_addr.s6_addr, a->ip, 16);
        }
        *len = (socklen_t)sizeof *in6;
        return 0;
    }
    return -1;
}

/* "a.b.c.d:port" or "[v6]:port" into a ringfence_addr. Returns 0, or -1. */
static int parse_addr(const char *s, ringfence_addr *out) {
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_str;
    size_t host_len;
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            return -1;
        }
        host_len = (size_t)(end - s - 1);
        port_str = end + 2;
        s++;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            return -1;
        }
        host_len = (size_t)(colon - s);
        port_str = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof host) {
        return -1;
    }
    memcpy(host, s, host_len);
    host[host_len] = '\0';
    if (port_str[0] < '0' || port_str[0] > '9' || strlen(port_str) > 5) {
        return -1;
    }
    char *end = NULL;
    unsigned long port = strtoul(port_str, &end, 10);
    if (*end != '\0' || port > 65535) {
        return -1;
    }
    out->port = (uint16_t)port;
    if (inet_pton(AF_INET, host, out->ip) == 1) {
        out->family = 4;
    } else if (inet_pton(AF_INET6, host, out->ip) == 1) {
        out->family = 6;
    } else {
        return -1;
    }
    return 0;
}

/* "a.b.c.d:port" or "[v6]:port" (at most 48 bytes with the NUL). */
static void format_addr(const ringfence_addr *a, char *buf, size_t cap) {
    char host[INET6_ADDRSTRLEN];
    if (a->family == 4 && inet_ntop(AF_INET, a->ip, host, sizeof host) != NULL) {
        snprintf(buf, cap, "%s:%u", host, (unsigned)a->port);
    } else if (a->family == 6 && inet_ntop(AF_INET6, a->ip, host, sizeof host) != NULL) {
        snprintf(buf, cap, "[%s]:%u", host, (unsigned)a->port);
    } else {
        snprintf(buf, cap, "(family %u):%u", (unsigned)a->family, (unsigned)a->port);
    }
}

/* ----- arguments ------------------------------------------------------------------ */

struct args {
    ringfence_addr listen;
    const char *config;
    bool metrics_on;
    ringfence_addr metrics;
    bool run_for_on;
    uint64_t run_for_s;
    bool quiet;
};

enum parse_result { PARSE_RUN, PARSE_HELP, PARSE_ERROR };

static enum parse_result parse_error(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return PARSE_ERROR;
}

static enum parse_result parse_args(int argc, char **argv, struct args *a, char *err,
                                    size_t cap) {
    memset(a, 0, sizeof *a);
    if (parse_addr("127.0.0.1:5060", &a->listen) != 0) {
        return parse_error(err, cap, "internal: default listen address");
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            return PARSE_HELP;
        }
        if (strcmp(arg, "--quiet") == 0) {
            a->quiet = true;
            continue;
        }
        if (strcmp(arg, "--listen") != 0 && strcmp(arg, "--config") != 0 &&
            strcmp(arg, "--metrics") != 0 && strcmp(arg, "--for") != 0) {
            return parse_error(err, cap, "unknown argument \"%s\"", arg);
        }
        if (i + 1 >= argc) {
            return parse_error(err, cap, "%s needs a value", arg);
        }
        const char *v = argv[++i];
        if (strcmp(arg, "--listen") == 0) {
            if (parse_addr(v, &a->listen) != 0) {
                return parse_error(err, cap,
                                   "--listen: \"%s\" is not an address like 127.0.0.1:5060", v);
            }
        } else if (strcmp(arg, "--config") == 0) {
            a->config = v;
        } else if (strcmp(arg, "--metrics") == 0) {
            if (parse_addr(v, &a->metrics) != 0) {
                return parse_error(err, cap,
                                   "--metrics: \"%s\" is not an address like 127.0.0.1:9090", v);
            }
            a->metrics_on = true;
        } else {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0) {
                return parse_error(err, cap, "--for: \"%s\" is not a number of seconds", v);
            }
            a->run_for_on = true;
            a->run_for_s = (uint64_t)s;
        }
    }
    return PARSE_RUN;
}

/* ----- config --------------------------------------------------------------------- */

/* Reads a whole file into a malloc'd buffer. Returns NULL with errno set on failure. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
            errno = ENOMEM;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    if (buf != NULL && ferror(f)) {
        int e = errno != 0 ? errno : EIO;
        free(buf);
        buf = NULL;
        errno = e;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* The config from FILE or the built-in default; on failure prints why (the ABI's
 * message names the field and the line) and returns NULL. */
static ringfence_config *load_config(const char *path) {
    char err[512] = "";
    ringfence_config *cfg = NULL;
    ringfence_status st;
    if (path == NULL) {
        st = ringfence_config_from_toml(DEFAULT_CONFIG, sizeof DEFAULT_CONFIG - 1, &cfg, err,
                                        sizeof err);
        path = "(built-in default)";
    } else {
        size_t len = 0;
        char *text = read_file(path, &len);
        if (text == NULL) {
            fprintf(stderr, "router: %s: %s\n", path, strerror(errno));
            return NULL;
        }
        st = ringfence_config_from_toml(text, len, &cfg, err, sizeof err);
        free(text);
    }
    if (st != RINGFENCE_OK) {
        fprintf(stderr, "router: %s: %s\n", path,
                st == RINGFENCE_INVALID_CONFIG ? err : ringfence_status_str(st));
        return NULL;
    }
    return cfg;
}

/* ----- engine helpers -------------------------------------------------------------- */

struct host {
    ringfence_engine *engine;
    int udp;
    int udp_family;
    ringfence_addr local;
    char local_str[64];
    uint8_t *out;       /* datagram buffer for ringfence_engine_send, grown on demand */
    size_t out_cap;
    uint64_t route_requests;
    bool failed;        /* a fatal engine status: stop the loop, exit 1 */
};

/* Reports a status that is not what the caller expected. RINGFENCE_PANIC means the
 * engine must not be used again: the host stops. Returns true when `st` is OK. */
static bool check(struct host *h, ringfence_status st, const char *what) {
    if (st == RINGFENCE_OK) {
        return true;
    }
    fprintf(stderr, "router: %s: %s\n", what, ringfence_status_str(st));
    if (st == RINGFENCE_PANIC || st == RINGFENCE_NULL_ARGUMENT) {
        h->failed = true;
    }
    return false;
}

/* Sends every datagram the engine has queued. */
static void flush_transmits(struct host *h) {
    while (!h->failed) {
        size_t len = 0;
        ringfence_addr dest, src;
        ringfence_status st =
            ringfence_engine_send(h->engine, h->out, h->out_cap, &len, &dest, &src);
        if (st == RINGFENCE_DONE) {
            return;
        }
        if (st == RINGFENCE_BUFFER_TOO_SMALL) {
            /* The datagram stays queued; len is its size. */
            if (len <= h->out_cap) {
                fprintf(stderr, "router: ringfence_engine_send: BUFFER_TOO_SMALL with "
                                "enough room (%zu <= %zu)\n", len, h->out_cap);
                h->failed = true;
                return;
            }
            uint8_t *bigger = realloc(h->out, len);
            if (bigger == NULL) {
                fprintf(stderr, "router: out of memory for a %zu-byte datagram\n", len);
                h->failed = true;
                return;
            }
            h->out = bigger;
            h->out_cap = len;
            continue;
        }
        if (!check(h, st, "ringfence_engine_send")) {
            h->failed = true;
            return;
        }
        struct sockaddr_storage ss;
        socklen_t ss_len = 0;
        char to[64];
        if (addr_to_sockaddr(&dest, h->udp_family, &ss, &ss_len) != 0) {
            format_addr(&dest, to, sizeof to);
            fprintf(stderr, "send to %s: address family not reachable from %s\n", to,
                    h->local_str);
            continue;
        }
        if (sendto(h->udp, h->out, len, 0, (const struct sockaddr *)(const void *)&ss,
                   ss_len) < 0) {
            format_addr(&dest, to, sizeof to);
            fprintf(stderr, "send to %s: %s\n", to, strerror(errno));
        }
    }
}

static void drain_events(struct host *h) {
    ringfence_event ev;
    ringfence_status st;
    while ((st = ringfence_engine_poll_event(h->engine, &ev)) == RINGFENCE_OK) {
        switch (ev.kind) {
        case RINGFENCE_EVENT_ROUTE_REQUEST:
            /* This host has no routing service: route requests run into the engine's
             * deadline and fall back to the last route that worked. A host with one
             * answers with ringfence_engine_route or ringfence_engine_reject. */
            h->route_requests++;
            break;
        default:
            /* CALL_*, DRAINED, CAPACITY/BREAKER/ROUTING/HEALTH changes: the counters
             * and the status line cover them. */
            break;
        }
    }
    if (st != RINGFENCE_DONE) {
        check(h, st, "ringfence_engine_poll_event");
        h->failed = true;
    }
}

enum text_kind { TEXT_PROMETHEUS, TEXT_BYPASS, TEXT_REPORT };

/* One of the engine's text outputs in a malloc'd, NUL-terminated buffer (NULL on
 * failure), grown until it fits. */
static char *engine_text(struct host *h, enum text_kind kind, uint64_t now_ns) {
    size_t cap = 256;
    char *buf = NULL;
    for (int tries = 0; tries < 8; tries++) {
        char *bigger = realloc(buf, cap);
        if (bigger == NULL) {
            break;
        }
        buf = bigger;
        size_t len = 0;
        ringfence_status st;
        switch (kind) {
        case TEXT_PROMETHEUS:
            st = ringfence_engine_stats_prometheus(h->engine, buf, cap, &len);
            break;
        case TEXT_BYPASS:
            st = ringfence_engine_bypass_signal(h->engine, now_ns, wall_ms(), buf, cap, &len);
            break;
        case TEXT_REPORT:
        default:
            st = ringfence_engine_node_report(h->engine, now_ns, h->local_str, wall_ms(), buf,
                                              cap, &len);
            break;
        }
        if (st == RINGFENCE_OK) {
            return buf;
        }
        if (st != RINGFENCE_BUFFER_TOO_SMALL || len <= cap) {
            check(h, st, "engine text output");
            break;
        }
        cap = len; /* the size it needs, NUL included */
    }
    free(buf);
    return NULL;
}

/* The counters the Rust router prints: all of them are in ringfence_stats. struct_size
 * says which version of the struct this program was built with; a library older than
 * the header fills only the fields it knows (the rest stay 0 here) and writes back how
 * many bytes it filled. */
static bool read_counters(struct host *h, ringfence_stats *s) {
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
    return check(h, ringfence_engine_stats(h->engine, s), "ringfence_engine_stats");
}

static void status_line(uint64_t elapsed_ns, const ringfence_stats *now,
                        const ringfence_stats *before) {
    const uint64_t *r = now->responses_sent, *b = before->responses_sent;
    uint64_t rejected = r[3] + r[4] + r[5];
    uint64_t rejected_before = b[3] + b[4] + b[5];
    printf("t=%4" PRIu64 "s active=%-5" PRIu64 " calls/s=%-5" PRIu64 " answered=%-7" PRIu64
           " rejected/s=%-5" PRIu64 " absorbed=%-7" PRIu64 " malformed=%" PRIu64 "\n",
           elapsed_ns / NS_PER_S, now->active_calls, now->calls_started - before->calls_started,
           now->calls_answered, rejected - rejected_before, now->retransmissions_absorbed,
           now->malformed);
}

static void summary(const ringfence_stats *s, uint64_t elapsed_ns) {
    const uint64_t *r = s->responses_sent;
    printf("--- summary after %.1fs ---\n", (double)elapsed_ns / 1e9);
    printf("datagrams %" PRIu64 "  requests %" PRIu64 "  responses %" PRIu64 "\n",
           s->datagrams, s->requests, s->responses);
    printf("calls started %" PRIu64 "  answered %" PRIu64 "  rejected %" PRIu64
           "  cancelled %" PRIu64 "  no answer %" PRIu64 "  superseded %" PRIu64
           "  ended %" PRIu64 "\n",
           s->calls_started, s->calls_answered, s->calls_rejected, s->calls_cancelled,
           s->calls_no_answer, s->calls_superseded, s->calls_ended);
    printf("forwarded %" PRIu64 "  failovers %" PRIu64 "  retransmissions absorbed %" PRIu64
           "  malformed %" PRIu64 "\n",
           s->invites_forwarded, s->failovers, s->retransmissions_absorbed, s->malformed);
    printf("responses sent 1xx %" PRIu64 " 2xx %" PRIu64 " 3xx %" PRIu64 " 4xx %" PRIu64
           " 5xx %" PRIu64 " 6xx %" PRIu64 "\n",
           r[0], r[1], r[2], r[3], r[4], r[5]);
    printf("refused %" PRIu64 "  reattempts %" PRIu64 "  suppressed %" PRIu64
           "  active %" PRIu64 "  health %" PRIu32 " (score %.3f)  draining %u\n",
           s->refused, s->reattempts, s->suppressed, s->active_calls, s->health_state,
           s->health_score, (unsigned)s->draining);
}

/* ----- sockets -------------------------------------------------------------------- */

static int open_socket(const ringfence_addr *addr, int type, ringfence_addr *bound) {
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int family = addr->family == 6 ? AF_INET6 : AF_INET;
    char name[64];
    format_addr(addr, name, sizeof name);
    if (addr_to_sockaddr(addr, family, &ss, &len) != 0) {
        fprintf(stderr, "router: bind %s: bad address\n", name);
        return -1;
    }
    int fd = socket(family, type, 0);
    if (fd < 0) {
        fprintf(stderr, "router: socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    if (type == SOCK_STREAM &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        fprintf(stderr, "router: SO_REUSEADDR: %s\n", strerror(errno));
    }
    if (bind(fd, (const struct sockaddr *)(const void *)&ss, len) != 0) {
        fprintf(stderr, "router: bind %s: %s\n", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, 16) != 0) {
        fprintf(stderr, "router: listen %s: %s\n", name, strerror(errno));
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        fprintf(stderr, "router: O_NONBLOCK: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t got_len = sizeof got;
    if (getsockname(fd, (struct sockaddr *)(void *)&got, &got_len) != 0 ||
        addr_from_sockaddr((const struct sockaddr *)(const void *)&got, bound) != 0) {
        fprintf(stderr, "router: getsockname: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes all of `p` (the client may have gone: errors just end the response). */
static bool send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Answers one HTTP request, if one is waiting: a tiny GET-only server on the router's
 * own loop (short timeouts, one request per connection). */
static void serve_http(struct host *h, int listener) {
    int conn = accept(listener, NULL, NULL);
    if (conn < 0) {
        return;
    }
    /* Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit anyway. */
    int flags = fcntl(conn, F_GETFL, 0);
    if (flags >= 0) {
        (void)fcntl(conn, F_SETFL, flags & ~O_NONBLOCK);
    }
    /* Long enough for a client on a loaded machine to send its request line after
     * connecting (200 ms was not); short enough not to stall SIP for long. */
    struct timeval tv = {1, 0};
    (void)setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* A request may arrive in pieces: read until the blank line ends the head (or the
     * buffer fills, the peer closes, or the timeout fires). */
    char req[1024];
    size_t got = 0;
    req[0] = '\0';
    while (got < sizeof req - 1 && strstr(req, "\r\n\r\n") == NULL) {
        ssize_t n = recv(conn, req + got, sizeof req - 1 - got, 0);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
        req[got] = '\0';
    }
    /* The path: the second word of the request line. */
    char path[256] = "";
    const char *sp = strchr(req, ' ');
    if (sp != NULL) {
        size_t k = strcspn(sp + 1, " \r\n");
        if (k < sizeof path) {
            memcpy(path, sp + 1, k);
            path[k] = '\0';
        }
    }
    uint64_t now = mono_ns();
    char *body = NULL;
    const char *status = "200 OK";
    bool line_end = false;
    if (strcmp(path, "/metrics") == 0) {
        body = engine_text(h, TEXT_PROMETHEUS, now);
    } else if (strcmp(path, "/bypass") == 0) {
        body = engine_text(h, TEXT_BYPASS, now);
        line_end = true;
    } else if (strcmp(path, "/report") == 0) {
        body = engine_text(h, TEXT_REPORT, now);
        line_end = true;
    } else {
        status = "404 Not Found";
    }
    const char *text = body != NULL ? body : "try /metrics, /bypass or /report\n";
    if (body == NULL && strcmp(status, "200 OK") == 0) {
        status = "500 Internal Server Error";
        text = "engine text unavailable\n";
        line_end = false;
    }
    size_t body_len = strlen(text) + (line_end ? 1 : 0);
    char head[256];
    int head_len = snprintf(head, sizeof head,
                            "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            status, body_len);
    if (head_len > 0 && (size_t)head_len < sizeof head &&
        send_all(conn, head, (size_t)head_len) && send_all(conn, text, strlen(text)) &&
        line_end) {
        (void)send_all(conn, "\n", 1);
    }
    free(body);
    close(conn);
}

/* ----- the loop ------------------------------------------------------------------- */

/* Reads up to RECV_BATCH datagrams and feeds each to the engine, sending what it
 * answers right away. */
static void receive(struct host *h, uint8_t *buf, size_t cap) {
    for (int i = 0; i < RECV_BATCH && !h->failed; i++) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(h->udp, buf, cap, 0, (struct sockaddr *)(void *)&from, &from_len);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                fprintf(stderr, "recv: %s\n", strerror(errno));
            }
            return;
        }
        ringfence_addr remote;
        if (addr_from_sockaddr((const struct sockaddr *)(const void *)&from, &remote) != 0) {
            continue;
        }
        check(h, ringfence_engine_recv(h->engine, mono_ns(), &remote, &h->local, buf, (size_t)n),
              "ringfence_engine_recv");
        flush_transmits(h);
    }
}

static int run(const struct args *a) {
    ringfence_config *cfg = load_config(a->config);
    if (cfg == NULL) {
        return 1;
    }
    struct host h;
    memset(&h, 0, sizeof h);
    h.udp = -1;
    int metrics = -1, rc = 1;
    uint8_t *recv_buf = NULL;

    h.udp = open_socket(&a->listen, SOCK_DGRAM, &h.local);
    if (h.udp < 0) {
        goto out;
    }
    h.udp_family = a->listen.family == 6 ? AF_INET6 : AF_INET;
    format_addr(&h.local, h.local_str, sizeof h.local_str);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: poll returns EINTR at once */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGPIPE, &ign, NULL) != 0) {
        fprintf(stderr, "router: sigaction: %s\n", strerror(errno));
        goto out;
    }

    ringfence_addr metrics_addr;
    if (a->metrics_on) {
        metrics = open_socket(&a->metrics, SOCK_STREAM, &metrics_addr);
        if (metrics < 0) {
            goto out;
        }
    }

    const uint64_t start = mono_ns();
    char err[512] = "";
    ringfence_status st = ringfence_engine_new(cfg, start, &h.engine, err, sizeof err);
    ringfence_config_free(cfg); /* the engine keeps a copy */
    cfg = NULL;
    if (st != RINGFENCE_OK) {
        fprintf(stderr, "router: %s\n", st == RINGFENCE_INVALID_CONFIG ? err
                                                                       : ringfence_status_str(st));
        goto out;
    }

    printf("ringfence router listening on %s (Ctrl-C to stop)\n", h.local_str);
    if (metrics >= 0) {
        char m[64];
        format_addr(&metrics_addr, m, sizeof m);
        printf("metrics on http://%s/metrics, bypass signal on /bypass\n", m);
    }

    const size_t recv_cap = 65535;
    recv_buf = malloc(recv_cap);
    h.out_cap = 1500; /* grown when the engine says RINGFENCE_BUFFER_TOO_SMALL */
    h.out = malloc(h.out_cap);
    if (recv_buf == NULL || h.out == NULL) {
        fprintf(stderr, "router: out of memory\n");
        goto out;
    }

    uint64_t next_status = start + NS_PER_S;
    const uint64_t stop_at = a->run_for_on && a->run_for_s < UINT64_MAX / NS_PER_S
                                 ? start + a->run_for_s * NS_PER_S
                                 : UINT64_MAX;
    ringfence_stats last;
    if (!read_counters(&h, &last)) {
        goto out;
    }

    while (!g_stop && !h.failed) {
        uint64_t now = mono_ns();
        if (now >= stop_at) {
            break;
        }
        /* Wake for the engine's next deadline, the status line or the end of --for. */
        uint64_t wake = next_status < stop_at ? next_status : stop_at;
        uint64_t deadline = 0;
        st = ringfence_engine_timeout_ns(h.engine, &deadline);
        if (st == RINGFENCE_OK) {
            if (deadline < wake) {
                wake = deadline;
            }
        } else if (st != RINGFENCE_DONE) {
            check(&h, st, "ringfence_engine_timeout_ns");
            break;
        }
        int wait_ms = 0;
        if (wake > now) {
            uint64_t ms = (wake - now + NS_PER_MS - 1) / NS_PER_MS; /* round up */
            wait_ms = ms > MAX_WAIT_MS ? MAX_WAIT_MS : (int)ms;
        }
        struct pollfd pfd[2] = {{h.udp, POLLIN, 0}, {metrics, POLLIN, 0}};
        int n = poll(pfd, metrics >= 0 ? 2 : 1, wait_ms);
        if (n < 0) {
            if (errno == EINTR) {
                continue; /* a signal: g_stop says whether to leave */
            }
            fprintf(stderr, "router: poll: %s\n", strerror(errno));
            break;
        }
        if (n > 0 && (pfd[0].revents & (POLLIN | POLLERR)) != 0) {
            receive(&h, recv_buf, recv_cap);
        }
        if (!h.failed) {
            check(&h, ringfence_engine_on_timeout(h.engine, mono_ns()),
                  "ringfence_engine_on_timeout");
        }
        if (!h.failed) {
            flush_transmits(&h);
        }
        if (!h.failed) {
            drain_events(&h);
        }
        if (!h.failed && metrics >= 0 && n > 0 && (pfd[1].revents & POLLIN) != 0) {
            serve_http(&h, metrics);
        }
        if (!h.failed && mono_ns() >= next_status) {
            ringfence_stats c;
            if (read_counters(&h, &c)) {
                if (!a->quiet) {
                    status_line(mono_ns() - start, &c, &last);
                }
                last = c;
            }
            next_status += NS_PER_S;
        }
    }
    if (!h.failed) {
        ringfence_stats c;
        if (read_counters(&h, &c)) {
            summary(&c, mono_ns() - start);
            if (h.route_requests > 0) {
                printf("route requests left to the engine's fallback: %" PRIu64 "\n",
                       h.route_requests);
            }
            rc = 0;
        }
    }

out:
    ringfence_engine_free(h.engine);
    ringfence_config_free(cfg);
    free(h.out);
    free(recv_buf);
    if (metrics >= 0) {
        close(metrics);
    }
    if (h.udp >= 0) {
        close(h.udp);
    }
    return rc;
}

int main(int argc, char **argv) {
    /* Line-buffered like Rust's stdout, so logs read through a pipe stay current. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct args a;
    char err[256] = "";
    switch (parse_args(argc, argv, &a, err, sizeof err)) {
    case PARSE_HELP:
        printf("%s\n", USAGE);
        return 0;
    case PARSE_ERROR:
        fprintf(stderr, "router: %s\n\n%s\n", err, USAGE);
        return 2;
    case PARSE_RUN:
    default:
        return run(&a);
    }
}
