/*
 * server.h - `facenet serve`: the HTTP API on libmicrohttpd.
 *
 * The daemon runs in libmicrohttpd's thread-pool mode. Inference runs on a
 * fixed pool of pipelines (one MTCNN detector and one embedder each); the
 * pool size is the cap on concurrent inferences, and a request that finds
 * every pipeline busy gets an immediate 503 rather than queueing.
 */
#ifndef FACENET_SERVER_SERVER_H
#define FACENET_SERVER_SERVER_H

#include <stddef.h>

#include "facenet/facenet.h"
#include "server/keys.h"

typedef struct fn_server_config {
    const char *bind;        /* IPv4 address; default "127.0.0.1"        */
    int port;                /* default 8080                              */
    int threads;             /* HTTP I/O threads (models: jobs.c); def. 4 */
    int pipelines;           /* concurrent inferences; default 2          */
    size_t max_body;         /* request body cap, bytes; default 16 MiB   */
    size_t max_body_memory;  /* all request bodies being received or held
                                at once, bytes (>= max_body); past it a new
                                body gets 503 before it is read; default
                                256 MiB                                   */
    unsigned long long max_pixels; /* per image; default 16,000,000       */
    int max_faces;           /* faces returned per image; default 64      */
    int timeout_s;           /* idle connection timeout; default 30       */
    int drain_s;             /* shutdown drain deadline; default 30       */
    const char *model_dir;
    const char *embed_model; /* NULL: the default embedder               */
    int dev;                 /* no keys: allowed only on 127.0.0.1        */
    const char *tls_cert;    /* PEM certificate (chain) file; with tls_key */
    const char *tls_key;     /* PEM private key file, mode 0600 or stricter;
                                both NULL: plain HTTP                      */
    const char *keys_path;   /* the keys file, reloaded when it changes
                                (checked at most once a second on the
                                request path) and on fn_server_reload_keys */
    const char *gallery;     /* gallery file (created when missing); NULL:
                                no gallery endpoints                     */
    const char *gallery_key_file; /* NULL: $FACENET_GALLERY_KEY          */
    int gallery_refresh_s;   /* pick up other processes' gallery writes
                                this often; default 2                    */
    int max_inflight_per_key; /* concurrent requests per key (429 past
                                 it); 0: no cap; default 8               */
    int deadline_ms;         /* per request, from its first byte: waiting
                                for a pipeline past it gives 503, an answer
                                past it 504; 0: none (no waiting at all) */
    int verify_best_accuracy; /* 1:1 at the best-accuracy threshold instead
                                 of the strict (FAR 1e-3) one, the default */
    int max_queue;           /* requests that may wait for a pipeline when
                                deadline_ms is set; default 16           */
} fn_server_config;

void fn_server_config_default(fn_server_config *config);

typedef struct fn_server fn_server;

/* Load the models (one pipeline per config->pipelines) and start serving.
 * `keys` is taken over by the server. Refuses an empty keyring unless
 * config->dev is set and the bind address is 127.0.0.1. With tls_cert and
 * tls_key (both or neither) it serves HTTPS only; a key file that its
 * group or others can read is refused. */
facenet_status fn_server_start(const fn_server_config *config, fn_keyring *keys,
                               fn_server **out, facenet_error *err);
/* Reload config->keys_path now (SIGHUP). A file that does not load keeps
 * the previous keys. Thread-safe. */
void fn_server_reload_keys(fn_server *server);
/* The port actually bound (useful with port 0). */
int fn_server_port(const fn_server *server);
/* Stop accepting, wait up to drain_s for in-flight requests, stop, free. */
void fn_server_stop(fn_server *server);

#endif
